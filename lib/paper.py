"""The paper's reported TVBench numbers (Lydakis et al., CVPRW 2025), Tables 3-8. Data only.

Copied cell by cell from /work/shared/research/paper_tables.md (Table 3 as corrected on the
authors' project page). Every row lists the ten TVBench tasks in ``COLUMNS`` order and ends with
"Avg", the micro average over all questions; ``None`` marks a cell our copy of the paper does
not recover ("?" in paper_tables.md). Accuracies are percentages.

Used by ``lib.tables.paper_frame``, which turns a table into a DataFrame (notebooks 01, 04, 05),
and ``lib.ablations`` (notebook 05); ``LLM_NAMES`` names the backbones as the tables do.
"""

TASKS = ["AC", "OC", "AS", "OS", "ST", "AL", "AA", "UA", "ES", "MD"]
COLUMNS = TASKS + ["Avg"]
LLM_NAMES = {"qwen": "Qwen2-7B", "llama": "Llama3.2-3B"}  # backbone -> name in the tables

# Table 3: image-trained vs video-trained LongVU; key (training, LLM, condition).
TABLE3 = {
    ("video-trained", "Llama3.2-3B", "normal"):
        [31.0, 59.4, 70.2, 33.3, 76.2, 44.4, 59.1, 32.9, 27.0, 75.9, 51.2],
    ("video-trained", "Llama3.2-3B", "shuffled"):
        [30.4, 32.4, 54.5, 33.8, 54.6, 28.7, 51.9, 31.7, 25.0, 28.4, 38.8],
    ("image-trained", "Llama3.2-3B", "normal"):
        [27.1, 45.3, 60.2, 32.4, 54.6, 36.2, 55.0, 35.4, 30.0, 77.6, 45.6],
    ("image-trained", "Llama3.2-3B", "shuffled"):
        [27.6, 33.1, 56.3, 32.9, 51.3, 29.4, 52.5, 36.6, 31.5, 26.3, 38.8],
    ("video-trained", "Qwen2-7B", "normal"):
        [33.9, 61.5, 75.3, 36.9, 78.4, 60.0, 65.0, 34.1, 31.5, 78.9, 55.8],
    ("video-trained", "Qwen2-7B", "shuffled"):
        [31.7, 37.2, 54.2, 38.2, 58.4, 30.0, 50.0, 28.0, 30.0, 24.1, 39.7],
    ("image-trained", "Qwen2-7B", "normal"):
        [31.0, 53.4, 66.8, 37.8, 75.1, 49.4, 58.1, 36.6, 32.5, 66.8, 50.5],
    ("image-trained", "Qwen2-7B", "shuffled"):
        [31.1, 33.8, 55.6, 37.3, 51.9, 32.5, 51.2, 36.6, 30.5, 27.6, 40.0],
}

# Table 4: best pseudo-video configurations; key (training data, LLM). "pseudo-videos" starts
# from the image-trained checkpoint, "videos + pseudo-videos" from the video-trained one.
TABLE4_MIXES = {"Llama3.2-3B": "(R1: S=4, F=20) + (R3: S=6, F=5)", "Qwen2-7B": "(R1: S=4, F=5)"}
TABLE4 = {
    ("videos", "Llama3.2-3B"):
        [31.0, 59.4, 70.2, 33.3, 76.2, 44.4, 59.1, 32.9, 27.0, 75.9, 51.2],
    ("pseudo-videos", "Llama3.2-3B"):
        [31.7, 54.1, None, None, 84.9, None, 57.2, None, None, 83.6, 53.5],
    ("videos + pseudo-videos", "Llama3.2-3B"):
        [33.0, 53.4, None, None, 83.8, None, 55.0, None, None, 82.3, 53.4],
    ("videos", "Qwen2-7B"):
        [33.9, 61.5, 75.3, 36.9, 78.4, 60.0, 65.0, 34.1, 31.5, 78.9, 55.8],
    ("pseudo-videos", "Qwen2-7B"):
        [32.6, 53.4, 74.8, None, 80.0, 50.0, 60.0, None, None, None, 51.9],
    ("videos + pseudo-videos", "Qwen2-7B"):
        [32.6, 57.4, 75.3, None, 82.7, 52.5, 63.8, None, None, None, 54.4],
}

# Table 5: one question type at a time (Llama3.2-3B, F=5); key: config.
TABLE5 = {
    "R1, S=4": [26.9, 52.7, 72.1, 36.9, 78.9, 34.4, 54.7, 30.5, 28.0, 82.8, 50.3],
    "R2, S=4": [28.0, 53.4, 72.5, 38.7, 62.2, 35.6, 56.2, 30.5, 30.0, 84.1, 50.1],
    "R3, S=6": [31.5, 50.0, 75.7, 28.9, 76.8, 41.2, 55.6, 24.4, 28.5, 84.5, 51.4],
    "R4, S=6": [29.7, 52.7, 74.1, 39.1, 64.3, 39.4, 55.9, 42.7, 30.0, 85.8, 51.6],
    "A1, S=6": [20.3, 45.3, 68.6, 33.3, 61.1, 33.8, 59.4, 41.5, 28.5, 79.7, 46.9],
    "A2, S=6": [28.2, 44.6, 73.7, 32.9, 64.9, 39.4, 56.2, 42.7, 28.0, 78.9, 49.5],
}

# Table 6: max frames per scene F (Llama3.2-3B); key: config.
TABLE6 = {
    "R1, F=1": [25.9, 50.0, 68.6, 35.1, 63.2, 32.5, 59.1, 24.4, 29.0, 73.3, 47.4],
    "R1, F=5": [26.9, 52.7, 72.1, 36.9, 78.9, 34.4, 54.7, 30.5, 28.0, 82.3, 50.3],
    "R1, F=10": [27.8, 50.7, 73.2, 36.4, 78.4, 40.0, 55.9, 35.4, 27.5, 84.1, 51.2],
    "R1, F=20": [27.1, 48.6, 73.5, 40.9, 83.8, 48.8, 58.4, 34.1, 24.0, 82.3, 52.2],
    "R1, F=40": [30.0, 54.1, 73.9, 40.4, 82.2, 41.9, 56.2, 29.3, 24.0, 81.9, 52.1],
    "R3, F=5": [31.5, 50.0, 75.7, 28.9, 76.8, 41.2, 55.6, 24.4, 28.5, 84.5, 51.4],
    "R3, F=20": [31.9, 57.4, 77.3, 36.0, 71.9, 47.5, 54.4, 28.0, 28.5, 75.0, 52.0],
    "R4, F=5": [29.7, 52.7, 74.1, 39.1, 64.3, 39.4, 55.9, 42.7, 30.0, 85.8, 51.6],
    "R4, F=20": [27.6, 50.0, 71.8, 31.5, 64.3, 43.7, 57.5, 35.4, 28.0, 71.1, 48.7],
    # Reported as an average only, in the text under the table.
    "(R1: F=20, S=4) + (R3: F=20, S=6)": [None] * 10 + [51.5],
}

# Table 7: max scenes S for R1 (Llama3.2-3B); key: config.
TABLE7 = {
    "S=2, F=5": [28.5, 49.3, 72.3, 34.2, 60.0, 35.0, 57.5, 28.0, 33.5, 80.2, 49.3],
    "S=2, F=10": [26.9, 49.3, 72.3, 31.5, 60.0, 35.6, 57.5, 25.6, 31.0, 81.5, 48.6],
    "S=4, F=5": [26.9, 52.7, 72.1, 36.9, 78.9, 34.4, 54.7, 30.5, 28.0, 82.3, 50.3],
    "S=8, F=5": [27.1, 49.3, 73.2, 35.5, 77.3, 36.2, 57.8, 25.6, 23.5, 82.7, 50.0],
}

# Table 8: number of pseudo-videos N for R1, S=4, F=5 (Llama3.2-3B); key: config.
TABLE8 = {
    "N=10,000; 312 steps": [26.5, 48.6, 72.1, 32.9, 68.1, 32.5, 57.8, 30.5, 28.5, 84.1, 49.2],
    "N=100,000; 3,125 steps": [26.9, 52.7, 72.1, 36.9, 78.9, 34.4, 54.7, 30.5, 28.0, 82.3, 50.3],
    "N=500,000; 15,625 steps":
        [28.4, 50.7, 72.3, 36.9, 82.2, 34.4, 55.6, 31.7, 21.5, 64.7, 48.7],
}

TABLES = {"3": TABLE3, "4": TABLE4, "5": TABLE5, "6": TABLE6, "7": TABLE7, "8": TABLE8}
INDEX_NAMES = {"3": ["training", "LLM", "condition"], "4": ["training data", "LLM"],
               "5": ["config"], "6": ["config"], "7": ["config"], "8": ["config"]}
