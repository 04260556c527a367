"""Workbook library for "How Important are Videos for Training Video LLMs?" (Lydakis et al., 2025).

Thin, flat modules used by the numbered notebooks; importing `lib` imports nothing heavy.
"""

__version__ = "0.1.0"
