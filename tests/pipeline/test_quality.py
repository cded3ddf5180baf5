"""The quality table: the CSV in docs/ reads back with its documented columns, the table's summary counts
the seeds that chose the random init, label-scarce rows come per k, and `weightspace quality` runs on a
zoo folder."""

import csv
import dataclasses
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from weightspace.cli.commands import build_parser, main
from weightspace.downstream.label_scarce import LabelScarceConfig
from weightspace.downstream.model_outputs import Unavailable
from weightspace.pipeline import quality
from weightspace.pipeline.experiment import zoo_experiment
from weightspace.pipeline.quality_table import (
    COLUMN_DOCS,
    COLUMNS,
    goal_lines,
    goal_rows,
    markdown,
    read_table,
    summarize,
    write_table,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "representation_quality.csv"
TEXT = ["zoo", "encoder", "feature_set", "probe", "target", "metric", "split", "command"]
NUMBERS = ["mean", "spread", "seeds", "draws", "minutes", "init_chosen"]


def test_docs_csv_reads_back_with_the_documented_columns():
    with open(DOCS, newline="") as f:
        widths = {len(row) for row in csv.reader(f)}
    assert widths == {len(COLUMNS)}
    table = pd.read_csv(DOCS)
    assert list(table.columns) == COLUMNS == list(COLUMN_DOCS)
    for column in TEXT:
        assert table[column].dropna().map(type).eq(str).all(), column
    assert table[["zoo", "encoder", "feature_set", "probe", "target", "split"]].notna().all().all()
    for column in NUMBERS:
        assert pd.api.types.is_numeric_dtype(table[column]), column
    assert set(table.split) <= {"train", "val", "test"} and set(table.metric) <= {"r2", "accuracy"}
    assert (table.seeds >= 1).all() and (table.spread.dropna() >= 0).all()
    assert set(table.k.dropna().astype(str)) <= {"10", "30", "100", "all"}
    assert table.command.notna().all()


def _raw(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).reindex(columns=quality.RAW_COLUMNS).assign(zoo="z")


def test_summary_counts_the_seeds_that_chose_the_random_init():
    rows = [dict(encoder="e", feature_set="e", probe="linear", target="t", metric="r2", split="test", value=v,
                 seed=s, minutes=1.0, chosen=c) for s, (v, c) in enumerate([(0.5, 0), (0.7, 2), (0.6, 0)])]
    rows += [dict(encoder="e", feature_set="e", probe="linear", target="t", metric="r2", split="test", k=k,
                  draw=d, value=0.1 * d, seed=s, minutes=1.0, chosen=s) for k in ("10", "all") for s in (0, 1)
             for d in ((0, 1, 2) if k == "10" else (0,))]
    summary = summarize(_raw(rows))
    full = summary[summary.k.isna()].iloc[0]
    assert full["mean"] == pytest.approx(0.6) and full.spread == pytest.approx(0.2)
    assert full.seeds == 3 and full.init_chosen == 2 and np.isnan(full.draws)
    ten = summary[summary.k == "10"].iloc[0]
    assert ten.seeds == 2 and ten.draws == 3 and ten.init_chosen == 1 and ten.spread == pytest.approx(0.2)
    text = markdown(summary.assign(command="c"))
    assert "| e | linear | 0.600 ± 0.200 | 1.0 | 2/3 |" in text
    assert "### z: probes with k labelled training models" in text and "| e | linear | 10 |" in text
    assert "before the random init was a candidate" not in text  # every learned row says what it chose
    stale = markdown(summary.assign(command="c", init_chosen=np.nan))
    assert "before the random init was a candidate" in stale and "| e | linear | 0.600 ± 0.200 | 1.0 | - |" in stale


def _cells(cells: list[tuple]) -> pd.DataFrame:
    """Test cells of a summarized table: (feature_set, probe, target, k, mean, spread)."""
    return pd.DataFrame([dict(zoo="z", encoder="baselines" if fs in ("code", "B_s", "B_probe (data-free)") else "e",
                              feature_set=fs, probe=p, target=t, metric="r2", split="test", k=k, mean=m, spread=sp,
                              seeds=1 if fs in ("code", "B_s", "B_probe (data-free)") else 3)
                         for fs, p, t, k, m, sp in cells]).reindex(columns=COLUMNS)


def test_goals_are_met_only_where_the_mean_clears_the_spread():
    cells = [("e, random init", "linear", "test_acc", None, 0.40, 0.02), ("e", "linear", "test_acc", None, 0.55, 0.04),
             ("e, random init", "linear", "training_iteration", None, 0.90, 0.0),  # less than 0.2 left: half of it
             ("e", "linear", "training_iteration", None, 0.96, 0.01),
             ("e, random init", "linear", "lr", None, 0.50, 0.01), ("e", "linear", "lr", None, 0.40, 0.02),
             ("code", "linear", "test_acc", None, 0.50, 0.0),  # cleared by 0.05 > spread 0.04
             ("code", "linear", "training_iteration", None, 0.955, 0.0),  # by 0.005, not above the spread 0.01
             ("e", "linear", "test_acc", "30", 0.30, 0.20), ("B_s", "gbt", "test_acc", "30", 0.05, 0.30)]
    row = goal_rows(_cells(cells)).iloc[0]
    assert row.training["test_acc"][0] and row.training["training_iteration"][0]  # +0.15 > 0.10; +0.06 > 0.05
    assert row["> code"]["test_acc"][0] and not row["> code"]["training_iteration"][0]
    assert not row["k=30: > B_s + gbt"]["test_acc"][0]  # +0.25, but the baseline's draws spread by 0.30
    assert row["k=30: > B_s + gbt"]["training_iteration"] is None and row["> B_probe"]["test_acc"] is None
    assert row["training loses on"] == "lr -0.100"
    short = goal_rows(_cells([(fs, p, t, k, m - 0.06 * (fs == "e" and t == "test_acc" and k is None), sp)
                              for fs, p, t, k, m, sp in cells])).iloc[0]
    assert not short.training["test_acc"][0]  # +0.09 < 0.10
    one = _cells(cells).assign(seeds=lambda t: np.where(t.encoder == "e", 1, t.seeds))
    alone = goal_rows(one).iloc[0]
    assert alone.training["test_acc"] == (False, "+0.150 (one run)") and alone["training loses on"] == "-"
    text = "\n".join(goal_lines(_cells(cells)))
    assert "| z | e | acc **met** +0.150 (0.100); epoch **met** +0.060 (0.050) |" in text


def test_markdown_names_no_issue_or_milestone():
    text = markdown(read_table(DOCS), source="s")
    assert "issue" not in text.lower() and "milestone" not in text.lower()
    assert "## Columns of the CSV" in text


def test_a_spilt_command_is_joined_back_and_written_quoted(tmp_path):
    header = "zoo,encoder,feature_set,probe,target,metric,split,mean,spread,seeds,minutes,command"
    legacy = tmp_path / "t.csv"
    legacy.write_text(f"{header}\nz,baselines,B_s,linear,t,r2,test,0.5,0.0,1,0.0,run a  # 2 cores, quiet, x\n")
    table = read_table(legacy)
    assert list(table.columns) == COLUMNS and table.command[0] == "run a  # 2 cores, quiet, x"
    write_table(tmp_path / "new", table, "other", [])
    back = pd.read_csv(tmp_path / "new.csv")
    assert list(back.columns) == COLUMNS and back.command[0] == "run a  # 2 cores, quiet, x"
    assert "## z" in (tmp_path / "new.md").read_text()


def test_label_scarce_rows_come_per_k_and_unavailable_features_say_why(make_zoo, monkeypatch):
    zoo = make_zoo(models=30)
    experiment = zoo_experiment(zoo)
    rows = quality.Rows.of(zoo, experiment)
    gone = [dataclasses.replace(b, features=lambda zoo, config: Unavailable("no network here"))
            if b.key == "outputs_free" else b for b in quality.BASELINES]
    monkeypatch.setattr(quality, "BASELINES", tuple(gone))
    config = quality.QualityConfig(encoders=(), label_scarce=True,
                                   scarce=LabelScarceConfig(ks=(10, "all"), draws=2, probes=("linear",)))
    table = quality.scarce_baselines(rows, replace(experiment, targets=("test_acc",)), config)
    assert set(table.k) == {"10", "all"} and set(table.split) == {"test"}
    drawn = table[(table.feature_set == "B_s") & (table.k == "10")]
    assert len(drawn) == 2 and drawn.value.notna().all()
    missing = table[table.feature_set == "B_probe (data-free)"]
    assert len(missing) == 2 and missing.value.isna().all() and (missing.note == "no network here").all()


def _scripted_selection(monkeypatch, scores):
    """Every evaluation of a training run scores the next of `scores` on validation."""
    from weightspace.pipeline import training

    values = iter(scores)
    monkeypatch.setattr(training, "probe_scores", lambda targets=None: lambda model, data: {
        "probe_mean_val": next(values)})


def test_the_random_init_is_a_candidate_of_each_seeds_choice(make_zoo, monkeypatch):
    zoo = make_zoo(models=30)
    run = quality.learner_experiment(zoo_experiment(zoo), "neuron_set", seed=0, smoke=True)
    _scripted_selection(monkeypatch, [0.9, 0.1, 0.2])  # the init scores best on validation
    trained = quality.train_learner(run, zoo, quality.Rows.of(zoo, run))
    assert trained.evaluation == 0 and np.array_equal(trained.chosen, trained.control)


def test_a_run_without_baselines_or_trees_gives_only_the_encoders_linear_rows_of_the_seeds_asked(make_zoo):
    zoo = make_zoo(models=30)
    config = quality.QualityConfig(seeds=2, seed_ids=(1,), encoders=("neuron_set",), smoke=True, baselines=False,
                                   encoder_trees=False)
    rows = quality.run_quality(zoo, zoo_experiment(zoo), config)
    assert set(rows.encoder) == {"neuron_set"} and set(rows.probe) == {"linear"}
    assert set(rows.feature_set) == {"neuron_set", "neuron_set, random init"}
    assert set(rows.seed) == {1}  # only the seed asked for: the others can run elsewhere
    with pytest.raises(ValueError, match="must be some of the seeds"):
        quality.QualityConfig(seeds=2, seed_ids=(2,))


def test_threads_hold_while_learners_train_in_this_process_and_are_restored(make_zoo, monkeypatch):
    zoo = make_zoo(models=30)
    seen = []

    def record(experiment, name, seed, zoo, rows, config, log=None):
        seen.append(torch.get_num_threads())
        return pd.DataFrame({"seed": [seed]})

    monkeypatch.setattr(quality, "encoder_rows", record)
    before = torch.get_num_threads()
    config = quality.QualityConfig(seeds=2, encoders=("neuron_set",), smoke=True, baselines=False,
                                   threads=before + 1)  # differs from what the process has, on any machine
    quality.run_quality(zoo, zoo_experiment(zoo), config)
    quality.run_quality(zoo, zoo_experiment(zoo), dataclasses.replace(config, threads=None))
    assert seen == [before + 1, before + 1, before, before] and torch.get_num_threads() == before


def test_a_run_of_one_baseline_gives_its_linear_and_tree_rows_and_keeps_the_others_in_the_table(make_zoo, tmp_path):
    zoo = make_zoo(models=30)
    config = quality.QualityConfig(seeds=1, encoders=(), smoke=True, baselines=("B_W",))
    rows = quality.run_quality(zoo, zoo_experiment(zoo), config)
    assert set(rows.encoder) == {"baselines"} and set(rows.feature_set) == {"B_W"}
    assert set(rows.probe) == {"linear"} and rows.value.notna().all()
    old = summarize(_raw([dict(encoder="baselines", feature_set=fs, probe="linear", target="test_acc", metric="r2",
                               split="test", value=0.5, seed=0, minutes=0.0) for fs in ("B_W", "B_s")]))
    write_table(tmp_path / "t", old.assign(command="old"), "z", ["baselines"])
    part = summarize(rows.assign(zoo="z")).assign(command="new")
    table = write_table(tmp_path / "t", part, "z", ["baselines"])
    assert set(table[table.command == "old"].feature_set) == {"B_s"}
    assert set(table[table.feature_set == "B_W"].command) == {"new"}
    with pytest.raises(ValueError, match="unknown baselines"):
        quality.QualityConfig(encoders=(), baselines=("B_X",))
    with pytest.raises(ValueError, match="or run the baselines"):
        quality.QualityConfig(encoders=(), baselines=False)
    with pytest.raises(ValueError, match="seeds and jobs must be at least 1"):
        quality.QualityConfig(encoders=(), baselines=("B_W",), seeds=0)


def test_a_label_scarce_only_run_replaces_only_the_label_scarce_rows_of_the_table(make_zoo, tmp_path):
    zoo = make_zoo(models=30)
    scarce = LabelScarceConfig(ks=(10,), draws=2, classes=False)
    config = quality.QualityConfig(seeds=1, encoders=("neuron_set",), smoke=True, baselines=False,
                                   encoder_trees=False, label_scarce=True, every_label=False, scarce=scarce)
    rows = quality.run_quality(zoo, zoo_experiment(zoo), config)
    assert rows.k.notna().all() and set(rows.k) == {"10"} and rows.value.notna().all()
    assert set(rows.feature_set) == {"neuron_set", "neuron_set, random init"}
    full = replace(config, every_label=True)
    old = summarize(quality.run_quality(zoo, zoo_experiment(zoo), full).assign(zoo="z")).assign(command="old")
    write_table(tmp_path / "t", old, "z", ["neuron_set"])
    table = write_table(tmp_path / "t", summarize(rows.assign(zoo="z")).assign(command="new"), "z",
                        ["neuron_set"], scarce_only=True)
    assert set(table[table.k.isna()].command) == {"old"} and set(table[table.k.notna()].command) == {"new"}
    assert len(table[table.k.isna()]) == len(old[old.k.isna()])
    with pytest.raises(ValueError, match="set label_scarce=True too"):
        quality.QualityConfig(encoders=("neuron_set",), every_label=False)


def test_a_narrower_baseline_run_keeps_the_baseline_groups_it_did_not_make(tmp_path):
    def rows(k, target, metric, value, command):
        return summarize(_raw([dict(encoder="baselines", feature_set="B_s", probe="linear", target=target,
                                    metric=metric, split="test", k=k, draw=0, value=value, seed=0, minutes=0.0)]
                              )).assign(command=command)
    old = pd.concat([rows("10", "test_acc", "r2", 0.1, "old"), rows("all", "test_acc", "r2", 0.2, "old"),
                     rows("10", "activation", "accuracy", 0.3, "old"), rows("10", "lr", "r2", 0.4, "old")])
    write_table(tmp_path / "t", old, "z", ["baselines"])
    # k = 10 again, continuous targets only, and no longer lr: the k = 10 r2 group is replaced whole
    table = write_table(tmp_path / "t", rows("10", "test_acc", "r2", 0.5, "new"), "z", ["baselines"])
    cells = {(r.k, r.target): (r.command, r.mean) for r in table.itertuples()}
    assert cells == {("10", "test_acc"): ("new", 0.5), ("all", "test_acc"): ("old", 0.2),
                     ("10", "activation"): ("old", 0.3)}


def test_seeds_run_apart_merge_into_one_row_from_their_raw_rows(tmp_path):
    bench = _bench()
    base = "python bench/representation_quality.py --zoo z --seeds 2 --encoders 'e'"
    rows = [dict(encoder="e", feature_set="e", probe="linear", target="t", metric="r2", split="test", value=v,
                 seed=seed, minutes=1.0, chosen=1, elapsed_min=m, command=f"{base}{flags}  # on 2 cores")
            for v, seed, m, flags in [(0.4, 0, 10.0, " --jobs 2"), (0.6, 1, 12.0, " --seed-ids 1")]]
    path = tmp_path / "raw.csv"
    _raw(rows).assign(elapsed_min=[10.0, 12.0], command=[r["command"] for r in rows]).to_csv(path, index=False)
    part = bench.part_from_raw(path, "z", ["e"])
    assert len(part) == 1 and part.seeds.iloc[0] == 2 and part["mean"].iloc[0] == pytest.approx(0.5)
    assert part.command.iloc[0].startswith(base + " --jobs 2  # 12 min on 2 cores")
    assert "with " + base + " --seed-ids 1" in part.command.iloc[0]


def _bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_quality", DOCS.parents[1] / "bench" / "representation_quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def _append_many(path, writer, start):
    bench = _bench()
    start.wait()  # every writer imported: the appends overlap in time
    for part in range(50):  # each append far larger than one buffered write, so an unlocked pair would interleave
        bench.append_rows(path, pd.DataFrame({"writer": writer, "part": part, "row": range(400), "text": "x" * 40}))


def test_runs_appending_to_one_raw_file_at_once_leave_it_whole(tmp_path):
    import multiprocessing

    path = tmp_path / "raw.csv"
    context = multiprocessing.get_context("fork")  # the writers run no torch: forking is safe and quick
    start = context.Barrier(3)
    writers = [context.Process(target=_append_many, args=(path, w, start)) for w in range(3)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=120)
        assert w.exitcode == 0
    rows = pd.read_csv(path)
    assert list(rows.columns) == ["writer", "part", "row", "text"] and len(rows) == 3 * 50 * 400
    # every append arrived in one piece: within a writer's part the rows run 0 ... 399 in order, without a gap
    for (_, _), part in rows.groupby(["writer", "part"]):
        assert part.row.tolist() == list(range(400)) and part.index.to_series().diff().dropna().eq(1).all()


def test_the_chosen_state_gives_the_chosen_embedding(make_zoo, monkeypatch):
    from weightspace.representation import embed

    zoo = make_zoo(models=30)
    run = quality.learner_experiment(zoo_experiment(zoo), "neuron_set", seed=0, smoke=True)
    assert run.iterations == 2
    _scripted_selection(monkeypatch, [0.1, 0.9, 0.5])  # the first evaluation scores best, and training goes on
    rows = quality.Rows.of(zoo, run)
    trained = quality.train_learner(run, zoo, rows)
    assert trained.evaluation == 1
    assert np.array_equal(embed(trained.model, rows.zoo.weights).numpy(), trained.chosen)
    assert not np.array_equal(trained.chosen, trained.control)


def test_quality_command_parses():
    args = build_parser().parse_args(["quality", "tetris_seed", "--seeds", "1", "--encoders", "2021", "--smoke",
                                      "--label-scarce"])
    assert args.func.__name__ == "_quality" and args.encoders == ["2021"] and args.label_scarce
    with pytest.raises(SystemExit):
        build_parser().parse_args(["quality", "tetris_seed", "--seeds", "0"])


@pytest.mark.long
@pytest.mark.slow
def test_quality_command_on_a_zoo_folder(make_zoo, tmp_path):
    zoo = make_zoo(models=30)
    zoo.info["name"] = "mine"
    zoo.save(tmp_path / "zoo")
    out = tmp_path / "out"
    assert main(["quality", str(tmp_path / "zoo"), "--smoke", "--seeds", "1", "--encoders", "neuron_set",
                 "--label-scarce", "--out", str(out)]) == 0
    table = pd.read_csv(out / "representation_quality.csv", dtype={"k": object})
    assert list(table.columns) == COLUMNS and set(table.zoo) == {"mine"}
    assert {"B_W", "B_s", "code", "B_probe (data-free)", "B_probe (task inputs)", "neuron_set",
            "neuron_set, random init"} <= set(table.feature_set)
    assert set(table.k.dropna()) == {"10", "30", "100", "all"}
    assert table[table.feature_set == "B_probe (task inputs)"].note.str.contains("not available").all()
    chosen = table[(table.feature_set == "neuron_set") & table.k.isna()]
    assert chosen.init_chosen.isin([0, 1]).all()


def test_the_command_runs_registered_learners_and_lists_them(capsys):
    from weightspace.cli.commands import QUALITY_DEFAULT
    from weightspace.pipeline.learners import list_learners

    assert set(QUALITY_DEFAULT) <= set(list_learners()) and set(quality.DEFAULT_ENCODERS) == set(QUALITY_DEFAULT)
    assert main(["learners"]) == 0
    heads = [line for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert [line.split(":")[0] for line in heads] == list_learners()
    assert heads[list_learners().index("2021")].endswith("size, latent_dim, stop_lr, iterations, epochs_per_step")
    with pytest.raises(ValueError, match="unknown learners"):
        quality.QualityConfig(encoders=("no_such_learner",))


@pytest.mark.long
@pytest.mark.slow  # ray
def test_quality_rows_are_what_run_gives_for_the_same_learner_zoo_seed_and_split(make_zoo, tmp_path):
    """A learner's row in the quality table is `weightspace run --learner NAME --seed S` on that zoo."""
    zoo = make_zoo(models=30)
    zoo.save(tmp_path / "zoo")
    zoo = quality.Zoo.load(tmp_path / "zoo")
    assert main(["run", str(tmp_path / "zoo"), "--out", str(tmp_path / "run"), "--smoke", "--seed", "1",
                 "--learner", "neuron_set", "--no-report", "--device", "cpu"]) == 0
    ran = pd.read_csv(tmp_path / "run" / "results.csv")
    config = quality.QualityConfig(seeds=2, seed_ids=(1,), encoders=("neuron_set",), smoke=True, baselines=False,
                                   encoder_trees=False)
    rows = quality.run_quality(zoo, zoo_experiment(zoo), config)
    chosen = rows[(rows.feature_set == "neuron_set") & (rows.split == "test")]
    ran = ran[ran.metric.isin(["r2", "accuracy"]) & (ran.split == "test")]
    both = chosen.merge(ran, on=["target", "metric"], suffixes=("_quality", "_run"))
    assert len(both) == len(chosen) > 0
    # one process and a ray trial train alike; float sums may differ in their last bits between thread counts
    np.testing.assert_allclose(both.value_quality, both.value_run, atol=1e-4)
