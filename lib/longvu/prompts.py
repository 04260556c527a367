"""LongVU prompt text: chat templates, the MVBench multiple-choice prompt, sentinel tokenisation.

Templates are built as literal strings (never via `apply_chat_template`, whose Llama-3 template
would insert today's date under transformers 5.x):
- "qwen": ChatML with system "You are a helpful assistant." (eval and training format);
- "llama3": what the original eval renders with the hub tokenizer's stock Llama-3.2 template
  under transformers 4.4x (date fallback "26 Jul 2024"); "llama3_train" is the training-time
  format (no date block). `LongVU.prompt()` prefers the checkpoint tokenizer's own template when
  it carries one (rendered with the 4.4x date) so the official Llama checkpoints get exactly the
  eval prompt of the original.
`<image>` marks where the visual tokens go; `tokenize_with_image` turns it into the -200 sentinel
with exactly one BOS. Used by notebooks 01 (TVBench eval), 03, 04 (training data).
"""

from __future__ import annotations

import string
from collections.abc import Sequence

IMAGE_TOKEN = "<image>"
IMAGE_TOKEN_INDEX = -200
SYSTEM = "You are a helpful assistant."
# the stock template's date when strftime_now is undefined (transformers 4.4x)
LLAMA3_DATE = "26 Jul 2024"
MC_INSTRUCTION = ("Answer with the option's letter from the given choices directly and only give "
                  "the best option.")
STOP = {"qwen": "<|im_end|>", "llama3": "<|eot_id|>", "llama3_train": "<|eot_id|>"}
TEMPLATES = ("qwen", "llama3", "llama3_train")


def template_for(backbone: str) -> str:
    return {"qwen": "qwen", "llama": "llama3"}[backbone]


def build_prompt(template: str, user_text: str, with_image: bool = True) -> str:
    """Full chat-formatted prompt ending at the assistant turn (generation prompt included)."""
    content = (IMAGE_TOKEN + "\n" + user_text) if with_image else user_text
    if template == "qwen":
        return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{content}<|im_end|>\n"
                "<|im_start|>assistant\n")
    if template in ("llama3", "llama3_train"):
        system = SYSTEM
        if template == "llama3":
            system = (f"Cutting Knowledge Date: December 2023\nToday Date: {LLAMA3_DATE}\n\n"
                      + SYSTEM)
        return ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                f"{system}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
                f"{content.strip()}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    raise ValueError(f"unknown template {template!r}; expected one of {TEMPLATES}")


def mc_user_text(question: str, options: Sequence[str]) -> str:
    """LongVU's MVBench multiple-choice user text (letters A, B, C... in option order)."""
    lines = "".join(f"({string.ascii_uppercase[i]}) {o}\n" for i, o in enumerate(options))
    return f"Question: {question}\nOptions:\n{lines}{MC_INSTRUCTION}"


def tokenize_with_image(tokenizer, prompt: str) -> list[int]:
    """Token ids of `prompt` with `<image>` replaced by -200; each chunk tokenised on its own.

    Net result of the original (tokenizer_image_token + the eval's BOS removal for Llama):
    no automatic special tokens, so the one `<|begin_of_text|>` written in the prompt stays.
    """
    chunks = prompt.split(IMAGE_TOKEN)
    ids: list[int] = []
    for i, chunk in enumerate(chunks):
        if i:
            ids.append(IMAGE_TOKEN_INDEX)
        if chunk:
            ids.extend(tokenizer(chunk, add_special_tokens=False)["input_ids"])
    return ids


def render_tokenizer_template(tokenizer, user_text: str, with_image: bool = True) -> str | None:
    """The prompt the original eval gets from a Llama tokenizer's own chat template, if any.

    Rendered with the transformers-4.4x date fallback so the result does not depend on today.
    """
    if not getattr(tokenizer, "chat_template", None):
        return None
    content = (IMAGE_TOKEN + "\n" + user_text) if with_image else user_text
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                         date_string=LLAMA3_DATE)


def training_example(tokenizer, template: str, user_text: str, answer: str,
                     with_image: bool = True, supervise_prompt_tokens: bool = False
                     ) -> tuple[list[int], list[int]]:
    """(input_ids with the sentinel, labels) for one single-turn training sample.

    Default: loss only on the answer and the closing end-of-turn token. With
    `supervise_prompt_tokens=True` it reproduces the original's labels (preprocess_qwen /
    preprocess_llama3): the whole assistant turn including its header, plus the role/separator
    tokens everywhere in the prompt (Qwen: "\\n", <|im_start|>, <|im_end|>; Llama: BOS, header
    markers, <|eot_id|>).
    """
    if template == "llama3":
        template = "llama3_train"  # training used the date-less format
    prompt = build_prompt(template, user_text, with_image)
    if template == "qwen":
        head, end = "<|im_start|>assistant\n", "<|im_end|>\n"
        unmask = ["\n", "<|im_start|>", "<|im_end|>"]
    else:
        head, end = "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"
        unmask = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    assert prompt.endswith(head)
    prompt_ids = tokenize_with_image(tokenizer, prompt[: -len(head)])
    head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    ans_ids = tokenizer(answer.strip() + end, add_special_tokens=False)["input_ids"]
    input_ids = prompt_ids + head_ids + ans_ids
    if supervise_prompt_tokens:
        special = {tokenizer.convert_tokens_to_ids(t) for t in unmask
                   if t.startswith("<|")}
        if "\n" in unmask:
            special.update(tokenizer("\n", add_special_tokens=False)["input_ids"])
        labels = [t if t in special else -100 for t in prompt_ids] + head_ids + ans_ids
    else:
        labels = [-100] * (len(prompt_ids) + len(head_ids)) + ans_ids
    return input_ids, labels
