"""Hub-shaped stand-ins: the gpu profile's hub models and datasets as tiny local copies (book/setup.md).

The ``gpu`` and ``paper`` profiles load Qwen2.5, BERT and two datasets from the Hugging Face Hub, which
this machine, CI and an offline laptop cannot reach. ``lay_out(hf_home)`` writes tiny stand-ins with the
hub artefacts' own shapes into a Hugging Face cache folder, exactly where the libraries look for a
download they made before: the datasets with their configs, splits, columns and ``ClassLabel`` names
(the patent sections' names hold "; "; AG News has no validation split; rows sorted by label, as some
hub files are), and random 2-layer models of the hub models' architectures (Qwen2 with its tokenizer's
special tokens, chat template and ``generation_config.json``, which asks for sampling and a repetition
penalty; BERT with an uncased WordPiece vocabulary). With ``environment(hf_home)`` set, the course's own
loaders and chapters run the gpu profile's code paths unchanged, on a CPU, with no network: a rehearsal
of a Colab run. The models are random and the texts are made up, so every number it prints is
meaningless; what it shows is that the code runs. Taught in book/setup.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from datasets import ClassLabel, Dataset, DatasetInfo, Features, SplitDict, SplitInfo, Value
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

from ..setup.assets import minilm_dir, own_seed, smollm2_dir

__all__ = ["SNAPSHOT", "PATENT_SECTIONS", "AG_NEWS_TOPICS", "HubDataset", "HUB_DATASETS", "lay_out", "environment",
           "main"]

SNAPSHOT = "0" * 40  # the commit a stand-in's snapshot folder is named after
_DATASET_HASH = "0" * 16

PATENT_SECTIONS = ("Human Necessities", "Performing Operations; Transporting", "Chemistry; Metallurgy",
                   "Textiles; Paper", "Fixed Constructions",
                   "Mechanical Engineering; Lightning; Heating; Weapons; Blasting", "Physics", "Electricity",
                   "General tagging of new or cross-sectional technology")
AG_NEWS_TOPICS = ("World", "Sports", "Business", "Sci/Tech")


@dataclass(frozen=True)
class HubDataset:
    """A hub dataset's shape as its card states it: configs, splits (with their full sizes), label names."""
    repo_id: str
    configs: tuple[str, ...]
    splits: dict[str, int]  # split -> rows on the hub (the stand-in keeps a few per class)
    label_names: tuple[str, ...]


HUB_DATASETS = (
    HubDataset("ccdv/patent-classification", ("patent", "abstract"),
               {"train": 25_000, "validation": 5_000, "test": 5_000}, PATENT_SECTIONS),
    HubDataset("fancyzhx/ag_news", ("default",), {"train": 120_000, "test": 7_600}, AG_NEWS_TOPICS),
)

# Qwen2.5-Instruct's chat template without its tool-calling branches: ChatML with a default system prompt
_QWEN_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if message.role == 'user' or message.role == 'assistant' "
    "or (message.role == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
_FILLER = ("the", "a", "method", "system", "device", "new", "using", "with", "for", "and", "which", "is")


def _standin_texts(label_names: tuple[str, ...], per_class: int, seed: int) -> tuple[list[str], list[int]]:
    """Made-up texts, ``per_class`` for each label, sorted by label: words of the label's name among filler."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, name in enumerate(label_names):
        words = [w.strip(";,/").lower() for w in name.replace("/", " ").split()]
        for _ in range(per_class):
            picked = list(rng.choice(words, size=3)) + list(rng.choice(_FILLER, size=int(rng.integers(5, 12))))
            texts.append(" ".join(rng.permutation(picked)))
            labels.append(label)
    return texts, labels


def _write_dataset(datasets_cache: Path, spec: HubDataset, per_class: dict[str, int]) -> list[Path]:
    """One stand-in dataset in the ``datasets`` cache, as a finished download leaves it: one folder per config."""
    namespace, name = spec.repo_id.split("/")
    features = Features({"text": Value("string"), "label": ClassLabel(names=list(spec.label_names))})
    folders = []
    for c, config in enumerate(spec.configs):
        folder = datasets_cache / f"{namespace}___{name}" / config / "0.0.0" / _DATASET_HASH
        folder.mkdir(parents=True, exist_ok=True)
        splits = SplitDict(dataset_name=name)
        for s, split in enumerate(spec.splits):
            texts, labels = _standin_texts(spec.label_names, per_class[split], seed=100 * c + s)
            table = Dataset.from_dict({"text": texts, "label": labels}, features=features).data.table
            with pa.OSFile(str(folder / f"{name}-{split}.arrow"), "wb") as sink, \
                    pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            splits.add(SplitInfo(name=split, num_examples=len(texts), dataset_name=name))
        DatasetInfo(features=features, splits=splits, config_name=config, dataset_name=name, builder_name="parquet",
                    version="0.0.0").write_to_directory(str(folder))
        folders.append(folder)
    return folders


def _snapshot_folder(hub_cache: Path, repo_id: str) -> Path:
    """The folder a model's files sit in after a download (``models--org--name/snapshots/<commit>``), with its ref."""
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(SNAPSHOT)
    folder = repo / "snapshots" / SNAPSHOT
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _qwen2_tokenizer():
    """SmolLM2's byte-level BPE tokenizer set up as Qwen2.5's: no BOS, EOS ``<|im_end|>``, pad ``<|endoftext|>``."""
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir())
    tokenizer.bos_token = None
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.chat_template = _QWEN_CHAT_TEMPLATE
    return tokenizer


def _write_qwen2(folder: Path) -> None:
    """A random 2-layer Qwen2 (biases on q, k, v; tied embeddings) with Qwen2.5-Instruct's generation settings."""
    tokenizer = _qwen2_tokenizer()
    eos, pad = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    with own_seed():
        model = Qwen2ForCausalLM(Qwen2Config(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768, tie_word_embeddings=True,
            bos_token_id=pad, eos_token_id=eos, pad_token_id=None))
    # Qwen2.5-0.5B-Instruct's generation_config.json: sampling and a repetition penalty (issue: labels penalised)
    model.generation_config = GenerationConfig(bos_token_id=pad, pad_token_id=pad, eos_token_id=[eos, pad],
                                               do_sample=True, repetition_penalty=1.1, temperature=0.7, top_p=0.8,
                                               top_k=20)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _write_bert(folder: Path) -> None:
    """A random 2-layer BERT with an uncased WordPiece vocabulary (MiniLM's, which is bert-base-uncased's)."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    with own_seed():
        model = BertForMaskedLM(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2,
                                           num_attention_heads=4, intermediate_size=128))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


_HUB_MODELS = {  # hub id -> how its stand-in is written (the gpu and paper profiles' models)
    "Qwen/Qwen2.5-0.5B-Instruct": _write_qwen2,
    "Qwen/Qwen2.5-7B-Instruct": _write_qwen2,
    "google-bert/bert-base-uncased": _write_bert,
    "anferico/bert-for-patents": _write_bert,
}


def lay_out(hf_home: str | Path, per_class: int = 20) -> dict[str, list[str]]:
    """Write every stand-in into ``hf_home`` (a Hugging Face cache root); returns what was written, by kind.

    ``per_class`` examples per label in each training split and a quarter of that in the other splits.
    Laying out again overwrites the stand-ins, nothing else.
    """
    root = Path(hf_home)
    sizes = {"train": per_class, "validation": max(2, per_class // 4), "test": max(2, per_class // 4)}
    written: dict[str, list[str]] = {"datasets": [], "models": []}
    for spec in HUB_DATASETS:
        _write_dataset(root / "datasets", spec, sizes)
        written["datasets"].append(spec.repo_id)
    for repo_id, write in _HUB_MODELS.items():
        folder = _snapshot_folder(root / "hub", repo_id)
        write(folder)
        (folder / "STANDIN.json").write_text(json.dumps({"stand_in_for": repo_id, "random_weights": True}))
        written["models"].append(repo_id)
    return written


def environment(hf_home: str | Path, profile: str = "gpu") -> dict[str, str]:
    """The environment variables under which the course runs ``profile`` on the stand-ins, on a CPU, offline."""
    return {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COURSE_PROFILE": profile,
            "COURSE_ALLOW_CPU": "1"}


def main(argv: list[str] | None = None) -> int:
    """``python -m tutorial_utils.tools.hub_standins DIR``: lay out the stand-ins in DIR and print the variables to export."""
    parser = argparse.ArgumentParser(prog="python -m tutorial_utils.tools.hub_standins", description=main.__doc__)
    parser.add_argument("hf_home", help="a new folder for the stand-ins' Hugging Face cache (not your real one)")
    parser.add_argument("--profile", default="gpu", choices=("gpu", "paper"))
    parser.add_argument("--per-class", type=int, default=20, help="training examples per label (default 20)")
    args = parser.parse_args(argv)
    root = Path(args.hf_home).resolve()
    if (root / "hub").is_dir() and not any((root / "hub").glob("models--*/snapshots/*/STANDIN.json")):
        raise SystemExit(f"{root} holds a Hugging Face cache with real downloads. Fix: name a new, empty folder; "
                         "the stand-ins would sit beside your real models under the same names.")
    written = lay_out(root, args.per_class)
    print(f"# stand-ins for {', '.join(written['models'] + written['datasets'])} in {root}", file=sys.stderr)
    for name, value in environment(root, args.profile).items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
