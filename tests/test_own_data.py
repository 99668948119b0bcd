"""Your own data: from_csv / from_pandas / from_dataset return the course's DatasetDict, or say what is wrong."""

import warnings

import pandas as pd
import pytest
from datasets import Dataset, DatasetDict

from tutorial_utils.data import DataError, from_csv, from_dataset, from_pandas, label_names
from tutorial_utils.production import run_folder


def table(n_per_class=20, classes=("billing", "bug", "praise"), start=0):
    rows = [{"message": f"{c} message number {i}", "topic": c} for c in classes
            for i in range(start, start + n_per_class)]
    return pd.DataFrame(rows)


def test_a_clean_csv_round_trips_to_the_course_shape(tmp_path):
    path = tmp_path / "tickets.csv"
    table().to_csv(path, index=False)
    data = from_csv(path, text_column="message", label_column="topic")
    assert set(data) == {"train", "validation", "test"}
    assert set(data["train"].features) == {"text", "label"} and label_names(data) == ["billing", "bug", "praise"]
    assert sum(len(s) for s in data.values()) == 60
    assert len(data["test"]) == pytest.approx(12, abs=3) and len(data["validation"]) == pytest.approx(6, abs=3)
    for split in ("validation", "test"):
        assert set(data[split]["label"]) == {0, 1, 2}  # stratified: every class in every carved split
    assert not set(data["train"]["text"]) & set(data["test"]["text"])
    assert from_csv(path, text_column="message", label_column="topic")["test"]["text"] == data["test"]["text"]


def test_given_splits_are_kept(tmp_path):
    frame = pd.concat([table(10).assign(part="train"), table(4, start=10).assign(part="TEST")])
    data = from_pandas(frame, "message", "topic", split_column="part", verbose=False)
    assert len(data["test"]) == 12 and len(data["validation"]) == 3  # validation carved from train only


def test_multi_label_cells_are_split_on_the_separator():
    frame = pd.DataFrame({"text": [f"text {i}" for i in range(30)],
                          "tags": ["a|b", "b", "a | c", "c|a", "b|c", ""] * 5})
    data = from_pandas(frame, labels_column="tags", verbose=False)
    assert label_names(data) == ["a", "b", "c"] and set(data["train"].features) == {"text", "labels"}
    rows = {text: ids for split in data.values() for text, ids in zip(split["text"], split["labels"])}
    assert rows["text 2"] == [0, 2] and rows["text 5"] == []


def test_from_dataset_takes_a_dataset_dict_s_splits():
    train = Dataset.from_pandas(table(10).rename(columns={"message": "text", "topic": "label"}))
    test = Dataset.from_pandas(table(3, start=10).rename(columns={"message": "text", "topic": "label"}))
    data = from_dataset(DatasetDict(train=train, test=test), label_column="label", verbose=False)
    assert len(data["test"]) == 9 and len(data["train"]) + len(data["validation"]) == 30


@pytest.mark.parametrize("frame, kwargs, message", [
    (table(), {"text_column": "mesage", "label_column": "topic"}, "No column 'mesage'.*did you mean 'message'"),
    (table(), {"text_column": "message"}, "exactly one label column"),
    (table(classes=("only",)), {"text_column": "message", "label_column": "topic"}, "at least two labels"),
    (pd.DataFrame({"m": ["a", "", "c", "d"], "t": ["x", "y", "x", "y"]}), {"text_column": "m", "label_column": "t"},
     "Text 1 is empty"),
    (pd.DataFrame({"m": ["a", "b", "c", "d"], "t": ["x", "", "x", "y"]}), {"text_column": "m", "label_column": "t"},
     "1 rows have no label"),
    (pd.DataFrame({"m": list("abcdefgh"), "t": list("xyxyxyxz"), "s": ["train"] * 7 + ["test"]}),
     {"text_column": "m", "label_column": "t", "split_column": "s"}, "never in train"),
    (pd.DataFrame({"m": list("abcd"), "t": list("xyxy"), "s": ["train", "dev", "train", "test"]}),
     {"text_column": "m", "label_column": "t", "split_column": "s"}, "'dev' -> 'validation'"),
])
def test_bad_tables_get_an_error_that_names_the_fix(frame, kwargs, message):
    with pytest.raises(DataError, match=message):
        from_pandas(frame, verbose=False, **kwargs)


def test_rare_classes_and_leaking_duplicates_are_warned_about():
    frame = pd.concat([table(20, ("a", "b")), table(3, ("rare",))])
    with pytest.warns(UserWarning, match="fewer than 5 training examples: rare"):
        from_pandas(frame, "message", "topic", verbose=False)
    leaky = pd.concat([table(10).assign(s="train"), table(10).assign(s="test")])
    with pytest.warns(UserWarning, match="test texts also occur in train.*leakage"):
        from_pandas(leaky, "message", "topic", split_column="s", verbose=False)


def test_a_csv_in_another_encoding_or_delimiter_is_named(tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9 au lait,drink\ntea,drink\n".encode("latin-1"))
    with pytest.raises(DataError, match="not valid utf-8.*encoding='latin-1'"):
        from_csv(latin)
    semicolons = tmp_path / "semi.csv"
    table().to_csv(semicolons, sep=";", index=False)
    with pytest.raises(DataError, match="';'-separated.*delimiter=';'"):
        from_csv(semicolons, text_column="message", label_column="topic")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(from_csv(semicolons, "message", "topic", delimiter=";", verbose=False)["train"]) > 0


# ---- what a practitioner's data may hide: warnings that stay on, a carve that reaches every split -------------

def test_data_warnings_survive_the_courses_quiet_output():
    from tutorial_utils.setup import session
    from tutorial_utils.setup.checks import DataWarning

    leaky = pd.concat([table(10).assign(s="train"), table(10).assign(s="test")])
    with warnings.catch_warnings(record=True) as caught:  # keeps the filters quiet() sets, as a chapter has them
        session.quiet(hide_progress=True)
        warnings.warn("a library's noise", UserWarning)  # attributed to this test module: not silenced either
        from_pandas(leaky, "message", "topic", split_column="s", verbose=False)
    said = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(said) == 1 and "leakage" in said[0]


def test_a_small_class_reaches_every_carved_split_or_is_refused_with_its_counts():
    frame = pd.concat([table(30, ("a", "b")), table(4, ("small",))])
    with pytest.warns(UserWarning, match=r"fewer than 5 training examples: small \(2\)"):  # 1 went to each carved split
        data = from_pandas(frame, "message", "topic", verbose=False)
    for split in ("validation", "test"):
        assert set(data[split]["label"]) == {0, 1, 2}
    with pytest.raises(DataError, match=r"too few distinct texts to reach every split \('tiny': 1 train, 1 validation, "
                                        r"0 test\)"):
        from_pandas(pd.concat([table(30, ("a", "b")), table(2, ("tiny",))]), "message", "topic", verbose=False)


def test_one_text_under_two_labels_stays_in_one_split():
    frame = pd.concat([table(30, ("a", "b")), pd.DataFrame({"message": ["same words"] * 3, "topic": ["a", "b", "a"]})])
    data = from_pandas(frame, "message", "topic", verbose=False)
    holding = [split for split in data if "same words" in data[split]["text"]]
    assert len(holding) == 1 and data[holding[0]]["text"].count("same words") == 3


def test_a_given_split_without_a_class_is_warned_about_with_what_it_costs():
    frame = pd.concat([table(10).assign(s="train"), table(5, ("billing", "bug"), start=10).assign(s="test")])
    with pytest.warns(UserWarning, match="test split has no example of praise.*perfect model scores 0.67"):
        from_pandas(frame, "message", "topic", split_column="s", verbose=False)


@pytest.mark.parametrize("content, message", [("", "is empty"), ("message,topic\n", "has a header .* but no rows")])
def test_an_empty_or_header_only_csv_is_named(tmp_path, content, message):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        from_csv(path, "message", "topic")


# ---- the same on the command line: one line of error, exit code 2, the warnings printed and kept -----------

def cli_train(path, out, *extra):
    return ["train", "tfidf", "--profile", "tiny", "--data", str(path), "--text-column", "message",
            "--label-column", "topic", "--out", str(out), *extra]


def test_the_command_line_prints_data_warnings_and_keeps_them_in_the_run(tmp_path, capsys):
    import json

    from tutorial_utils.storage import store
    from tutorial_utils.tools import cli

    path = tmp_path / "leaky.csv"
    pd.concat([table(10).assign(s="train"), table(10).assign(s="test")]).to_csv(path, index=False)
    assert cli.main(cli_train(path, tmp_path / "run", "--split-column", "s")) == 0
    said = capsys.readouterr()
    assert "warning: " in said.err and "test texts also occur in train" in said.err
    assert "test split, per class:" in said.out  # what a macro average hides on skewed data
    info = json.loads((tmp_path / "run" / run_folder.METRICS).read_text())
    assert [row["class"] for row in info["test_per_class"]] == ["billing", "bug", "praise"]
    assert sum(row["support"] for row in info["test_per_class"]) == 30
    assert "leakage" in info["data_warnings"][0]
    assert "leakage" in store.read(tmp_path / "run" / run_folder.RECORD).extra["data warnings"][0]


def test_the_command_line_refuses_bad_input_in_one_line(tmp_path, refused):
    missing = refused(cli_train(tmp_path / "nothing.csv", tmp_path / "run"))
    assert "is not a file" in missing
    (tmp_path / "empty.csv").write_text("")
    assert "is empty" in refused(cli_train(tmp_path / "empty.csv", tmp_path / "run"))
    latin = tmp_path / "latin.csv"
    table().assign(message=lambda f: f["message"] + " caf\xe9").to_csv(latin, index=False, encoding="latin-1")
    assert "--encoding latin-1" in refused(cli_train(latin, tmp_path / "run"))
    from tutorial_utils.tools import cli

    assert cli.main(cli_train(latin, tmp_path / "run", "--encoding", "latin-1")) == 0


def test_a_run_on_your_data_reads_as_many_tokens_as_most_of_its_texts_need_within_twice_the_profiles_length():
    from tutorial_utils.setup.config import get_profile
    from tutorial_utils import methods
    from tutorial_utils.production import workflow

    profile = get_profile("tiny")
    cap = workflow.LENGTH_BUDGET * profile.train.max_length
    medium = from_pandas(table(10).assign(message=lambda f: f["message"] + " word" * 60), "message", "topic",
                         verbose=False)
    fitted, line = workflow.text_length(profile, methods.EMBEDDING_HEAD, medium)
    chosen = fitted.train.max_length
    assert profile.train.max_length < chosen < cap and chosen % workflow.LENGTH_STEP == 0
    assert f"text length: {chosen} tokens" in line and f"0 of {len(medium['train'])} training texts are longer" in line
    long = from_pandas(table(10).assign(message=lambda f: f["message"] + " word" * 100), "message", "topic",
                       verbose=False)
    capped, line = workflow.text_length(profile, methods.EMBEDDING_HEAD, long)
    assert capped.train.max_length == cap, "the default never reads more than twice the profile's length"
    assert f"{len(long['train'])} of {len(long['train'])} training texts are longer" in line
    needed = int(line.split("would need ")[1].split(":")[0])
    assert needed > cap and f"--max-length {needed}" in line, "the line says how to read them all"
    short = from_pandas(table(10), "message", "topic", verbose=False)
    assert workflow.text_length(profile, methods.EMBEDDING_HEAD, short)[0].train.max_length == workflow.LENGTH_STEP
    encoder, _ = workflow.text_length(profile, methods.ENCODER, long, max_length=64)
    assert encoder.encoder_train.max_length == 64 and encoder.train == profile.train
    with pytest.raises(DataError, match="more than the model reads"):
        workflow.text_length(profile, methods.ENCODER, long, max_length=100_000)
    assert workflow.text_length(profile, methods.TFIDF, long) == (profile, "")
