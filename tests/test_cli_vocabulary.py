"""One CLI vocabulary: every option of every command has help, shared options read the same
everywhere, the train flags are TrainConfig's fields, and every option is named in a test."""
from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from artextract.cli import build_parser, main


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(path, parser) for every command and sub-command, depth first."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, prefix + (name,))


def _options(parser):
    return [a for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction))]


ALL = list(_commands(build_parser()))
LEAVES = [(path, p) for path, p in ALL
          if path and not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)]


def test_the_walk_sees_every_command():
    names = {" ".join(path) for path, _ in LEAVES}
    assert {"train", "evaluate", "predict", "outliers", "duplicates", "index", "similar", "evaluate-retrieval",
            "ingest wikiart", "ingest csv", "ingest nga", "ingest folder", "catalog info", "prepare",
            "demo-data", "download nga", "report", "demo", "serve", "backbones"} <= names


def test_every_option_of_every_command_has_help():
    missing = [f"artextract {' '.join(path)} {a.option_strings[0] if a.option_strings else a.dest}"
               for path, p in ALL for a in _options(p) if not (a.help and a.help.strip())
               and a.help is not argparse.SUPPRESS]
    assert not missing, "options without help text:\n  " + "\n  ".join(missing)


@pytest.mark.parametrize("cmd", ["train", "outliers", "ingest folder", "demo-data", "ingest csv"])
def test_help_prints_every_option(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main(cmd.split() + ["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    parser = dict((" ".join(path), p) for path, p in ALL)[cmd]
    for a in _options(parser):
        if a.option_strings:
            assert a.option_strings[-1] in text


def _by_flag(flag: str):
    """{command: action} for every command that has ``flag``."""
    return {" ".join(path): a for path, p in LEAVES for a in _options(p) if flag in a.option_strings}


@pytest.mark.parametrize("flag", ["--backbone", "--pretrained", "--weights", "--no-progress", "--seed", "--json",
                                  "--cache"])
def test_shared_options_read_the_same_everywhere(flag):
    found = _by_flag(flag)
    assert len(found) >= 2, f"{flag} is not shared"
    kinds = {(type(a).__name__, a.type, tuple(a.choices or ())) for a in found.values()}
    assert len(kinds) == 1, f"{flag} differs between commands: {found}"
    if flag in ("--pretrained", "--weights", "--no-progress"):
        assert len({a.help for a in found.values()}) == 1, f"{flag} has different help texts"


def test_json_on_every_command_that_prints_a_result_table():
    assert set(_by_flag("--json")) >= {"catalog info", "evaluate", "predict", "similar", "evaluate-retrieval",
                                       "outliers", "duplicates"}


def test_cache_on_every_command_that_reads_prepared_images_or_feature_stores():
    """One cache folder per catalogue: `prepare --cache` records it; each reader may also be given it."""
    found = _by_flag("--cache")
    assert set(found) == {"prepare", "train", "evaluate", "outliers", "duplicates", "index", "report", "serve",
                          "demo", "status"}
    assert all("e.g. --cache " in a.help for a in found.values())


def test_quiet_means_only_the_global_log_level():
    """`-q/--quiet` is the top-level "warnings only"; no command uses it for progress bars."""
    assert not _by_flag("--quiet") and not _by_flag("-q")
    top = {a.dest for a in _options(build_parser())}
    assert {"log_quiet", "log_verbose"} <= top


def test_pretrained_and_backbone_defaults_are_the_package_default():
    from artextract.defaults import DEFAULT_BACKBONE

    assert {a.default for a in _by_flag("--backbone").values()} <= {DEFAULT_BACKBONE, argparse.SUPPRESS}
    assert {a.default for a in _by_flag("--pretrained").values()} <= {"imagenet", argparse.SUPPRESS}


def test_train_flags_are_the_trainconfig_fields():
    from artextract.training.config import TrainConfig

    train = dict((" ".join(path), p) for path, p in ALL)["train"]
    dests = {a.dest for a in _options(train)}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert fields - {"pretrained", "progress"} <= dests            # one flag per field ...
    assert {"pretrained", "no_progress"} <= dests                    # ... the shared ones included
    # and nothing else but the inference-engine options every command with a forward pass shares
    assert dests - fields <= {"config", "resume", "no_progress", "engine", "precision", "threads", "workspace"}
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata.get("help"), f"TrainConfig.{f.name} has no help"


def test_ingest_error_names_the_real_importers(tmp_path, capsys):
    from artextract.data.catalog import INGEST_SOURCES

    ingest = dict((" ".join(path), p) for path, p in ALL)["ingest"]
    sources = next(a for a in ingest._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(INGEST_SOURCES) == set(sources)
    assert main(["catalog", "info", str(tmp_path / "nope.parquet")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and all(s in err for s in INGEST_SOURCES)


# ---------------------------------------------------------------------- every option has a test
TESTS = Path(__file__).resolve().parent

#: "COMMAND --option" -> why no test can run it here. Each entry needs a reason; an entry whose option
#: a test names, or that no command has any more, fails the test below (so the list only shrinks).
UNTESTED_OPTIONS: dict[str, str] = {}


def _named(option: str, text: str) -> bool:
    """``option`` written as a test passes it: quoted ("--k" or '--k'), or followed by a space, "=" or a quote."""
    return re.search(re.escape(f'"{option}"') + "|" + re.escape(f"'{option}'") + "|" + re.escape(option) + r"[ =\"']",
                     text) is not None


def _long_options():
    """("COMMAND --option", option) for every long option of every command (the global ones under "")."""
    for path, p in ALL:
        for a in _options(p):
            for o in a.option_strings:
                if o.startswith("--"):
                    yield " ".join((*path, o)), o


def test_every_option_of_every_command_is_named_in_a_test():
    """A test of the test suite: an option that no test file under tests/ names (this file aside, which
    only reads the parser) has no test that runs it. Add one, end to end, asserting the option's effect."""
    here = Path(__file__).resolve()
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(TESTS.rglob("*.py")) if p.resolve() != here)
    options = dict(_long_options())
    missing = sorted(k for k, o in options.items() if k not in UNTESTED_OPTIONS and not _named(o, text))
    assert not missing, ("options that no test names (add a test that runs each, or an UNTESTED_OPTIONS entry "
                         "with the reason):\n  artextract " + "\n  artextract ".join(missing))
    stale = sorted(k for k in UNTESTED_OPTIONS if k not in options or _named(options[k], text))
    assert not stale, "UNTESTED_OPTIONS entries that are tested now, or gone: " + ", ".join(stale)
    assert all(reason.strip() for reason in UNTESTED_OPTIONS.values())


def test_the_option_check_reads_test_code_as_written():
    assert _named("--k", 'main(["outliers", "--k", "3"])') and _named("--k", "['--k']")
    assert _named("--k", 'f"--k {k}"') and _named("--k", '"--k=3"')
    assert not _named("--k", '"--keep"') and not _named("--k", "the --k-means option")
    assert {"train --layers", "outliers --k", "--verbose", "review export --format"} <= dict(_long_options()).keys()


def test_every_command_with_a_forward_pass_has_the_engine_options():
    from artextract.cli.options import ENGINE_COMMANDS

    by = dict((" ".join(path), p) for path, p in ALL)
    for name in ENGINE_COMMANDS:
        dests = {a.dest for a in _options(by[name])}
        assert {"engine", "precision", "threads"} <= dests, name
