"""LongVU prompt strings, the MVBench multiple-choice text and sentinel tokenisation."""

from __future__ import annotations

from lib.longvu import prompts

QWEN = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<image>\nHi?<|im_end|>\n<|im_start|>assistant\n")
LLAMA = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
         "December 2023\nToday Date: 26 Jul 2024\n\nYou are a helpful assistant.<|eot_id|>"
         "<|start_header_id|>user<|end_header_id|>\n\n<image>\nHi?<|eot_id|>"
         "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_templates_are_literal():
    assert prompts.build_prompt("qwen", "Hi?") == QWEN
    assert prompts.build_prompt("llama3", "Hi?") == LLAMA
    train = prompts.build_prompt("llama3_train", "Hi?")
    assert train.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                            "You are a helpful assistant.<|eot_id|>")
    assert "<image>" not in prompts.build_prompt("qwen", "Hi?", with_image=False)


def test_mc_user_text():
    got = prompts.mc_user_text("What moved?", ["the cat", "the dog"])
    assert got == ("Question: What moved?\nOptions:\n(A) the cat\n(B) the dog\nAnswer with "
                   "the option's letter from the given choices directly and only give the best "
                   "option.")


def test_tokenizer_template_renders_the_eval_prompt():
    from lib.longvu.tiny import build_tokenizer
    tok = build_tokenizer("llama")
    assert prompts.render_tokenizer_template(tok, "Hi?") == LLAMA


def test_sentinel_tokenisation_keeps_one_bos():
    from lib.longvu.tiny import build_tokenizer
    tok = build_tokenizer("llama")
    bos = tok.convert_tokens_to_ids("<|begin_of_text|>")
    assert tok("x")["input_ids"][0] == bos  # the tokenizer adds BOS by itself, like Llama 3
    ids = prompts.tokenize_with_image(tok, LLAMA)
    assert ids[0] == bos and ids.count(bos) == 1
    assert ids.count(prompts.IMAGE_TOKEN_INDEX) == 1
    qtok = build_tokenizer("qwen")
    qids = prompts.tokenize_with_image(qtok, QWEN)
    assert qids[0] == qtok.convert_tokens_to_ids("<|im_start|>")
    assert qtok.decode([i for i in qids if i >= 0]) == QWEN.replace("<image>", "")


def test_training_labels_default_and_original():
    from lib.longvu.tiny import build_tokenizer
    tok = build_tokenizer("qwen")
    ids, labels = prompts.training_example(tok, "qwen", "Which?", "B")
    assert len(ids) == len(labels) and ids.count(-200) == 1
    supervised = [t for t, l in zip(ids, labels) if l != -100]
    assert tok.decode(supervised) == "B<|im_end|>\n"
    ids2, labels2 = prompts.training_example(tok, "qwen", "Which?", "B",
                                             supervise_prompt_tokens=True)
    assert ids2 == ids
    sup2 = tok.decode([t for t, l in zip(ids2, labels2) if l != -100])
    assert sup2.endswith("<|im_start|>assistant\nB<|im_end|>\n")
    assert sup2.count("<|im_start|>") == 3  # system, user, assistant markers all supervised
    ltok = build_tokenizer("llama")
    lids, llabels = prompts.training_example(ltok, "llama3", "Which?", "B")
    assert ltok.decode([t for t, l in zip(lids, llabels) if l != -100]) == "B<|eot_id|>"
    assert "Cutting Knowledge" not in ltok.decode([i for i in lids if i >= 0])
