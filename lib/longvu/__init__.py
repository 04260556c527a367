"""LongVU (Shen et al. 2024) re-implemented on transformers 5.x; loads the official checkpoints.

The model every notebook studies (01 TVBench evaluation, 03 pseudo-video fine-tuning, 04
analysis). Stock `Qwen2ForCausalLM` / `LlamaForCausalLM` driven through `inputs_embeds`, the two
frozen HF towers (`SiglipVisionModel`, `Dinov2Model`), LongVU's connector and its video token
pipeline; numerically matched to the original (commit 1b0be5c) by the shared parity fixtures.

API
    model = lib.longvu.load(path_or_id, towers=None, quantization="none"|"nf4", dtype=None,
                            device="cpu", adapter=None, flags=None, template=None,
                            token_layout=None, layout_seed=0)
        path_or_id: checkpoint dir in the original layout (config.json + safetensors) or a
        hub id already in the HF cache (Vision-CAIR/LongVU_Qwen2_7B[_img],
        Vision-CAIR/LongVU_Llama3_2_3B[_img]); towers: None (the checkpoint's own towers/
        dir, else google/siglip-so400m-patch14-384 + facebook/dinov2-giant from the cache),
        a dir with siglip/ and dinov2/, or {"siglip": ..., "dinov2": ...}. Fails loudly
        (LongVULoadError) on missing/unexpected keys and shape mismatches, on damaged files
        (naming the file and the fix), on index entries outside the checkpoint dir, on
        config.json lacking a field that changes the computation (errors.LongVUConfigError,
        a LongVULoadError and a ValueError), and with a `hf download` command when files are
        absent. adapter: a PEFT adapter dir (adapter_model.safetensors +
        connector.safetensors; pickles refused). token_layout: None = the checkpoint's own;
        "video" = an image-stage checkpoint in the paper fork's video layout (144 queries,
        highres, lowres 8, drop 0.8; the absent sampler `pos_embed_*` drawn N(0, 1) from
        layout_seed, an int or torch.Generator; a no-op on a video checkpoint); "image" is
        refused on a video checkpoint. Changes and created parameters go to the report.
    model.tokenizer, model.config (LongVUConfig), model.decoder (stock causal LM, or its peft
        wrapper), model.template ("qwen" | "llama3"), model.device, model.dtype
    model.loading_report                                config fields defaulted (with the
        original's value and source) or ignored as the original ignores them, fields a
        token_layout changed (old -> new), parameters not read from files (shape and init),
        weight files read, notes; logged by `load`. Field rules: config.LLM_FIELDS,
        config.LONGVU_FIELDS.
    model.prompt(user_text) -> str                      eval prompt of this checkpoint
    prompts.build_prompt(template, user_text, with_image=True) -> str
    prompts.mc_user_text(question, options) -> str      MVBench multiple-choice user text
    prompts.training_example(tokenizer, template, user_text, answer, ...) -> (ids, labels)
    model.preprocess(frames uint8 (T,H,W,3), kind="video"|"image") -> dict   (CPU only);
        model-free twin for DataLoader workers: lib.longvu.model.preprocess_visual(frames,
        kind, sizes=model.towers.sizes, legacy_video_size_swap=...); for videos also
        VideoPreprocessor(sizes, swap)(frames) and .reorder(prepared, order)
    model.prepare_inputs_embeds(input_ids, visual, attention_mask=None)
        -> (inputs_embeds (B,L,H), attention_mask (B,L), position_map (B,L)); position_map
        indexes each sample's input_ids (-1 = visual/padding); LongVU.align_labels maps labels.
    model.forward(visual, input_ids, labels) -> LossOutput(loss, num_tokens, row_tokens,
        row_loss): mean CE on labels != -100 over a right-padded batch, lm_head applied only at
        those rows; grads reach connector + decoder; per row (detached) the label tokens kept
        and their mean CE.
    model.generate(frames, prompt_text, max_new_tokens=5, stop=None) -> str   (greedy)
    model.next_token_logits(frames, prompt_text) -> (vocab,) fp32
    model.sequence_logprob(frames, prompt_text, continuations) -> list[float]
    model.generate_batch(visuals, prompt_texts) / model.likelihood_batch(visuals, prompt_texts,
        letters, options): many questions per decoder forward, options scored over one
        prefill's key/value cache (batched.py; equal to the one-question calls)
    with model.visual_cache(): towers + connector run once per prepared clip
    lib.longvu.save(model, out_dir)                     original layout + towers/ + tokenizer
    lib.longvu.tiny.build_tiny / write_tiny             tiny random checkpoints
    CLI: python -m lib.longvu tiny --backbone qwen|llama --stage video|image
             --geometry real|small --seed 0 --out DIR
         python -m lib.longvu parity DIR               (exit 1 if any case fails)
    `frames` arguments accept a uint8 array (treated as a video) or a `preprocess` dict;
    `prompt_text` is the full chat-formatted prompt containing `<image>` (or a list of ids).

Fidelity switches (`lib.longvu.Flags`, pass `flags=` to `load`)
    legacy_video_size_swap=True   videos pass (H, W) where LongVU reads (W, H) - the released
                                  video models were trained and evaluated that way (landscape
                                  frames lose side columns instead of padded rows); False = fixed.
    legacy_dino_interp=True       DINOv2 position table interpolated the transformers-4.4x way
                                  (5.x samples other positions: DINO features change ~10 %).
    legacy_placeholder_tokens=False  training collator leak: token-id-0 embeddings right after
                                  the visual block (599 image-stage / 155 video-stage for a
                                  square frame); on = as LongVU's trainer fed them.
    suppress_extra_vocab=True     ids >= len(tokenizer) cannot be produced (the original resizes
                                  Qwen's 152064-row head to the tokenizer length).
    dtype                         fp16 = the original's inference precision; bf16 (CUDA default)
                                  avoids fp16 overflow on long videos; fp32 on CPU.
    prompts.training_example(..., supervise_prompt_tokens=False)  True = the original labels
                                  (whole assistant turn + role/newline tokens everywhere).
    Llama prompts: template "llama3" = the hub tokenizer's stock template rendered with the
    4.4x date fallback; "llama3_train" = the date-less training format.
"""

from __future__ import annotations

__all__ = ["load", "save", "LongVU", "Flags", "LongVULoadError", "bnb_config"]


def __getattr__(name: str):
    # lazy: `import lib.longvu.prompts` stays light (no torch/transformers import)
    if name in ("load", "save", "LongVULoadError", "bnb_config"):
        from . import loading
        return getattr(loading, name)
    if name in ("LongVU", "Flags"):
        from . import model  # lazy for the same reason
        return getattr(model, name)
    raise AttributeError(f"module 'lib.longvu' has no attribute {name!r}")
