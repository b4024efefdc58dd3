"""Argument helpers shared by the verbs."""

from __future__ import annotations

import argparse
import os


def formatter() -> type[argparse.HelpFormatter]:
    return argparse.RawDescriptionHelpFormatter


def add_run_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    """Run settings; every default is None so that CLI > suite YAML > defaults can be resolved."""
    parser.add_argument("--workload", required=required, help="workload name (see 'ls workloads')")
    parser.add_argument("--compressor", help="compressor name (see 'ls compressors'); default none")
    parser.add_argument("--profile", choices=["tiny", "paper"], help="tiny (embedded data, minutes) or paper")
    parser.add_argument("--dataset", help="dataset name (default: the workload's default)")
    parser.add_argument("--data-root", dest="data_root", help="directory holding real datasets")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="device to train and measure on (default cpu)")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.add_argument(
        "--backend", dest="backends", action="append", help="inference backend, repeatable (default eager)"
    )
    parser.add_argument("--measure", choices=["smoke", "report", "quick"], help="measurement profile (default smoke)")
    parser.add_argument(
        "--set",
        dest="set_items",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="compressor option, recipe.<key> or workload.<key> override; repeatable",
    )
    parser.add_argument(
        "--train-data",
        dest="train_data",
        choices=["real", "deepinversion", "noise"],
        help="training data of a data-needing compressor: the real split (default), images synthesized from the "
        "dense model by DeepInversion (data-free; settings via --set synthesis.<key>=...), or N(0,1) noise",
    )
    parser.add_argument(
        "--tasks",
        help="ordered task sequence of a multi-task compressor (packnet, piggyback), comma-separated; task 1 is the "
        "baseline's dataset. Items: NAME, NAME[a-b] (classes a..b), split-NAME:K (K class-split tasks), idx:DIR "
        "(MNIST-format files in --data-root/DIR); e.g. fashion-mnist,split-digits:2",
    )
    parser.add_argument("--results", help="results directory (default results/)")
    parser.add_argument("--resume", action="store_true", default=None, help="resume training from checkpoints")
    add_quiet(parser)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress lines or bars (errors still print)")


def set_quiet(quiet: bool) -> None:
    """``--quiet``: silence progress output for this process and the processes it starts."""
    if quiet:
        os.environ["HARNESS_QUIET"] = "1"


def cli_values(args: argparse.Namespace) -> dict:
    keys = (
        "workload",
        "compressor",
        "profile",
        "dataset",
        "data_root",
        "device",
        "seed",
        "backends",
        "measure",
        "results",
        "resume",
        "train_data",
        "tasks",
    )
    return {k: getattr(args, k, None) for k in keys}
