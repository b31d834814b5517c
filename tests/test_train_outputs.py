"""What `model/` holds: a classifier's labels travel with an adapter, loadable by plain transformers/peft."""

from __future__ import annotations

from modelops.models.spec import ModelSpec
from modelops.train.config import TrainConfig


def test_a_lora_classifier_loads_with_its_own_labels_in_plain_peft_and_transformers(tmp_path):
    from peft import AutoPeftModelForSequenceClassification, LoraConfig
    from transformers import AutoModelForSequenceClassification

    from modelops.data.dataset import Dataset
    from modelops.train.loop import train

    names = ["bad", "meh", "good"]
    rows = [{"text": f"{word} review number {i}", "label": word} for i in range(8) for word in names]
    dataset = Dataset.from_records(rows, format="classification", labels=names)
    lora = LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"])
    spec = ModelSpec(name_or_path="minilm", task="seq_cls", max_length=32, peft=lora)
    config = TrainConfig(max_steps=2, batch_size=8, resume=None, cache_dir=str(tmp_path / "cache"), merge_adapter=True)
    result = train(spec, dataset, config, tmp_path / "run")
    for model in (
        AutoPeftModelForSequenceClassification.from_pretrained(result.model_dir),
        AutoModelForSequenceClassification.from_pretrained(result.model_dir),
        AutoModelForSequenceClassification.from_pretrained(result.model_dir / "merged"),
    ):
        assert model.config.num_labels == 3
        assert [model.config.id2label[i] for i in range(3)] == names
