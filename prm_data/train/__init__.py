"""PRM fine-tuning on exported stepwise data (TRL PRMTrainer's format), on transformers + accelerate.

- `config.TrainConfig`: every knob, TRL PRMConfig defaults;
- `data.tokenize_example`: TRL-identical tokenization (labels on the step separator), plus soft labels;
- `model`: load the base model / tokenizer, LoRA, the hard and soft losses, `PRMScorer`;
- `loop.train_prm(config) -> TrainResult`: the training loop (1 CPU, 1 GPU, or many via a launcher);
- `tiny.make_tiny_model`: a locally built tokenizer + small config, for tests and the GPU check.
"""
