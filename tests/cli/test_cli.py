"""The command line is generated from the options dataclasses: every flag is explained, typed and lands in the
field it was declared by."""
import argparse
import dataclasses

import pytest

from yolocompress.cli import build_parser, main, parse_command
from yolocompress.cli.commands import COMMANDS
from yolocompress.core.errors import ConfigError
from yolocompress.distill.options import DistillOptions
from yolocompress.prune.methods import METHODS


def _subparsers():
    ap = build_parser()
    action = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


@pytest.mark.parametrize("name", [c.name for c in COMMANDS])
def test_every_option_of_every_subcommand_has_help(name):
    p = _subparsers()[name]
    missing = [a.option_strings or a.dest for a in p._actions if not (a.help or "").strip()]
    assert missing == []
    text = p.format_help()
    assert "%(" not in text and "(default: None)" not in text and "(default: False)" not in text


def test_help_shows_defaults_and_the_method_table(capsys):
    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    out = capsys.readouterr().out
    assert "(default: 2.0)" in out and "(default: 0.9)" in out  # --speedup, --max-ratio
    assert "{" + ",".join(METHODS) + "}" in out.replace("\n", "").replace(" ", "")
    assert "pagcp" in METHODS and "PAGCP" in out  # its own help group


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("yolocompress ")


def test_flags_land_in_their_fields(tmp_path):
    cmd, kw, _ = parse_command(["prune", "--weights", "w.pt", "--data", "d.yaml", "--method", "pagcp", "--speedup", "3",
                                "--global", "--round-to", "8", "--rounds", "2", "--img", "96", "--epochs", "5",
                                "--teacher", "auto", "--kd-logit", "ast", "--kd-option", "beta=2",
                                "--modules", "a.py", "--modules", "b.py"])
    assert cmd.name == "prune"
    prune, train, distill = kw["prune"], kw["train_opts"], kw["distill"]
    assert (prune.method, prune.speedup, prune.global_pruning, prune.round_to) == ("pagcp", 3.0, True, 8)
    assert prune.pagcp.rounds == 2 and prune.pagcp.initial_rate == 0.05
    assert (train.imgsz, train.epochs, train.project, train.modules) == (96, 5, "runs/prune", ["a.py", "b.py"])
    assert (distill.teacher, distill.logit, distill.options) == ("auto", "ast", ["beta=2"])
    assert kw["weights"] == "w.pt" and kw["resume"] is None
    # each command keeps its own run folder default
    assert parse_command(["sparse", "--weights", "w", "--data", "d", "--method", "slim"])[1]["train_opts"].project \
        == "runs/sparse"
    assert parse_command(["train", "--cfg", "c", "--data", "d"])[1]["train_opts"].project == "runs/train"


def test_every_cli_field_defaults_like_its_dataclass():
    """A flag left out gives exactly the dataclass default (the library and the CLI cannot drift)."""
    _, kw, _ = parse_command(["prune", "--weights", "w.pt", "--data", "d.yaml", "--method", "l1"])
    for opts in (kw["prune"], kw["distill"]):
        default = type(opts)(**{f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)
                                if f.metadata.get("required") or f.name == "method"})  # --method: given above
        assert opts == default


@pytest.mark.parametrize("argv,message", [
    (["prune", "--method", "nosuch"], "invalid choice: 'nosuch'"),
    (["prune", "--method", "l1", "--speedup", "1"], "--speedup must be greater than 1.0"),
    (["prune", "--method", "l1", "--max-ratio", "1.5"], "must be between 0 and 1"),
    (["train", "--cfg", "c", "--epochs", "0"], "must be a positive integer"),
    (["sparse", "--method", "lamp"], "invalid choice: 'lamp'"),  # only the methods that need sparse training
])
def test_bad_values_are_one_line(argv, message, capsys):
    argv = [argv[0], "--weights", "w.pt", "--data", "d.yaml", *argv[1:]] if argv[0] != "train" else \
        [argv[0], "--data", "d.yaml", *argv[1:]]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_kd_option_is_routed_to_the_loss_that_takes_it():
    opts = DistillOptions(logit="ast", feature="cwd", options=["beta=2", "tau=0.5"]).check()
    assert opts.logit_options == {"beta": 2} and opts.feature_options == {"tau": 0.5}
    with pytest.raises(ConfigError, match="no chosen loss takes 'mask_ratio'.*ast takes beta; cwd takes tau"):
        DistillOptions(logit="ast", feature="cwd", options=["mask_ratio=0.5"]).check()
    with pytest.raises(ConfigError, match="write KEY=VALUE"):
        DistillOptions(logit="l2", options=["beta"]).check()


def test_help_texts_are_plain_text_and_zero_defaults_are_shown():
    """A '%' in a help text must not break --help, and a default of 0 is a default (not 'no default')."""
    import dataclasses as dc
    from yolocompress.cli.flags import HelpFormatter, add_options
    from yolocompress.core.options import option

    @dc.dataclass
    class Knobs:
        """Knobs"""
        share: float = option(0.0, "share of the loss, in % of the detection loss")
        off: bool = option(False, "a switch")

    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    add_options(p, Knobs)
    text = p.format_help()
    assert "in % of the detection loss (default: 0.0)" in text and "a switch\n" in text
