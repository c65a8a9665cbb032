"""``repro``: list papers, run a paper's claim test, render REPRODUCTIONS.md, show a paper.

repro list
repro run dcl                      # the cpu preset: the paper's claim at small scale
repro run dcl --preset smoke       # seconds, procedural data
accelerate launch -m shared.cli run dcl --preset paper   # paper scale, hub data
repro report [--check]
repro show dcl
repro data scenes --gallery out.png    # look at generated data before training on it
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").exists() else Path.cwd()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="repro",
        description="Reproductions of contrastive-learning papers: run a paper's claim test, render the table.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{list,run,report,show,data}")

    sub.add_parser("list", help="every paper: number, name, family, tier, status")

    run = sub.add_parser(
        "run",
        help="train a paper's method and baseline, write a result record",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    run.add_argument("paper", help="package name (dcl), number (11) or short name")
    run.add_argument("--preset", default="cpu", help="smoke (seconds), cpu (the claim at small scale) or paper")
    run.add_argument("--seeds", type=int, default=None, help="number of paired seeds (0..N-1); default: the preset's")
    run.add_argument(
        "--data-dir",
        default=None,
        help="local data folder (offline road); also $REPRO_DATA_DIR; else system copies, then the hub",
    )
    run.add_argument(
        "--out", default=str(DEFAULT_ROOT / "results"), help="results folder: writes <out>/<package>/<preset>.json"
    )
    run.add_argument("--run-dir", default=str(DEFAULT_ROOT / "runs"), help="checkpoints and per-run metrics (JSONL)")
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run: finished (arm, seed) runs are reused, unfinished resume from checkpoint",
    )
    run.add_argument("--epochs", type=int, default=None, help="override the preset's epochs (recorded in the setting)")
    run.add_argument("--arms", default=None, help="comma-separated subset of the preset's arms")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default=None,
        help="autocast precision of every arm; default: the preset's, where 'bf16' is granted only on devices with "
        "native bf16 (CUDA, CPUs with AVX512-BF16/AMX) and fp32 elsewhere",
    )
    run.add_argument(
        "--allow-dirty",
        action="store_true",
        help="run a cpu/paper preset on uncommitted code (the record is stamped dirty and the report marks it)",
    )
    run.add_argument(
        "--merge",
        action="store_true",
        help="train only --arms and add them to the existing record; its other arms are kept when their settings "
        "equal the preset's (each arm's commit is recorded). Only when the code that trains and evaluates the kept "
        "arms is unchanged since they ran",
    )

    report = sub.add_parser(
        "report",
        help="render REPRODUCTIONS.md from the result records",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    report.add_argument("--check", action="store_true", help="exit 1 if REPRODUCTIONS.md differs from the rendering")
    report.add_argument("--results", default=str(DEFAULT_ROOT / "results"), help="results folder")
    report.add_argument("--output", default=str(DEFAULT_ROOT / "REPRODUCTIONS.md"), help="file to write or check")

    show = sub.add_parser("show", help="a paper's card, presets and recorded results")
    show.add_argument("paper")
    show.add_argument("--results", default=str(DEFAULT_ROOT / "results"), help="results folder")
    _data_parser(sub)
    return p


SCENE_VIEWS = ("scenes", "landslide", "clips", "classification")


def _data_parser(sub) -> None:
    """``repro data scenes [--gallery out.png] [knobs]``: a generated data set, drawn or summarised."""
    data = sub.add_parser(
        "data",
        help="generated data sets: draw a gallery of samples (look before you train)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Generate samples of a procedural data set and draw them with their masks and captions "
        "(--gallery), or print a summary of the config and the first sample.",
    )
    data.add_argument("dataset", choices=("scenes",), help="the generated data set (shared/data/scenes.py)")
    data.add_argument("--gallery", metavar="OUT.png", default=None, help="write a grid of samples to this PNG file")
    data.add_argument(
        "--view",
        choices=SCENE_VIEWS,
        default="scenes",
        help="scenes (image, masks, captions), landslide (height map and landslide mask), clips (moving "
        "objects, frames and instance masks) or classification (the 32 px view with class labels)",
    )
    data.add_argument("--n", type=int, default=8, help="number of samples (clips for --view clips), 1-64")
    data.add_argument(
        "--image-size", type=int, default=None, help="side in pixels, 32-128; default 64 (32 for classification)"
    )
    data.add_argument("--seed", type=int, default=0, help="generator seed (same seed, same samples)")
    data.add_argument(
        "--objects", default=None, help="objects per scene, MIN-MAX or N, within 0-8; default 2-5 (0 for landslide)"
    )
    data.add_argument(
        "--palette", default="standard", help="how the named colours render: standard, muted, pastel or dark"
    )
    data.add_argument("--texture", type=float, default=0.0, help="grating over the image, amplitude in [0, 1]")
    data.add_argument("--noise", type=float, default=0.0, help="std of Gaussian pixel noise, in [0, 0.5]")
    data.add_argument("--blur", type=float, default=0.0, help="std of a Gaussian blur in pixels, in [0, 4]")
    data.add_argument("--night", type=float, default=0.0, help="night: darkening, gamma and blue cast, in [0, 1]")
    data.add_argument("--height", action="store_true", help="add the elevation map (always on for landslide)")
    data.add_argument(
        "--caption-noise", type=float, default=0.0, help="fraction of images that carry another image's captions"
    )
    data.add_argument("--frames", type=int, default=8, help="frames per clip (--view clips), 2-64")


def _cmd_list() -> int:
    from shared.registry import catalogue

    print(f"{'#':>2}  {'package':<16} {'name':<34} {'tier':<16} {'status':<12} family")
    for e in catalogue(load=False):  # reads the catalogue and the folder names: imports no paper
        status = "implemented" if e.implemented else "planned"
        print(f"{e.number:>2}  {e.package:<16} {e.short_name[:34]:<34} {e.tier[:16]:<16} {status:<12} {e.family}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from shared.experiment import run_experiment
    from shared.registry import find_paper

    entry = find_paper(args.paper)
    if not entry.implemented:
        raise ValueError(f"paper {entry.number} ({entry.short_name}) is not implemented yet; see `repro list`")
    if args.preset not in entry.presets:
        raise ValueError(f"unknown preset {args.preset!r} for {entry.package}; choose from {sorted(entry.presets)}")
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {args.epochs}")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise ValueError(f"--data-dir {args.data_dir} is not a folder (it would silently fall back to other copies)")
    arms = [a.strip() for a in args.arms.split(",")] if args.arms else None
    if args.merge and not arms:
        raise ValueError("--merge needs --arms: the arms to train and add to the existing record")
    record = run_experiment(
        entry.card,
        entry.presets[args.preset],
        seeds=args.seeds,
        out_dir=args.out,
        run_root=args.run_dir,
        resume=args.resume,
        data_dir=args.data_dir,
        epochs=args.epochs,
        arms=arms,
        progress=not args.no_progress,
        allow_dirty=args.allow_dirty,
        merge=args.merge,
        precision=args.precision,
    )
    _end_distributed()
    return 0 if record else 1


def _end_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _cmd_report(args: argparse.Namespace) -> int:
    from shared.report import is_stale, provenance_problems, write_report
    from shared.results import load_records

    if args.check:
        problems = provenance_problems(load_records(args.results), Path(args.results).resolve().parent)
        for problem in problems:
            print(f"provenance: {problem}", file=sys.stderr)
        if is_stale(args.output, args.results):
            print(f"{args.output} is stale: run `repro report` and commit it", file=sys.stderr)
            return 1
        if problems:
            return 1
        print(f"{args.output} is up to date; every record names a commit that contains its code")
        return 0
    print(f"wrote {write_report(args.output, args.results)}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from shared.experiment import summary_table
    from shared.registry import find_paper
    from shared.results import read_record

    e = find_paper(args.paper)
    print(f"{e.number}. {e.short_name} — methods/{e.package} (tier {e.tier}; {e.family})")
    if not e.implemented:
        print("not implemented yet")
        return 0
    c = e.card
    print(f"{c.title}\narXiv {c.arxiv} · official code: {c.official_code}\n")
    print("reported:")
    for r in c.reported:
        print(f"  {r.metric}: {r.value} ({r.setting}; {r.source})")
    print("\npresets:")
    print(_presets_text(e))
    for path in sorted(Path(args.results, e.package).glob("*.json")):
        print(summary_table(read_record(path)))
    return 0


def _object_range(text: str | None, default: tuple[int, int]) -> tuple[int, int]:
    """``--objects`` as (min, max): "2-5" or "3"; a clear error otherwise."""
    if text is None:
        return default
    parts = text.split("-")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--objects must be MIN-MAX or N (e.g. 2-5), got {text!r}")
    lo, hi = int(parts[0]), int(parts[-1])
    if not 0 <= lo <= hi <= 8:
        raise ValueError(f"--objects must satisfy 0 <= MIN <= MAX <= 8, got {text!r}")
    return lo, hi


def _cmd_data(args: argparse.Namespace) -> int:
    import torch

    from shared.data import scenes as sc
    from shared.data import scenes_gallery as gallery

    if not 1 <= args.n <= 64:
        raise ValueError(f"--n must be in [1, 64], got {args.n}")
    if args.seed < 0:
        raise ValueError(f"--seed must be non-negative, got {args.seed}")
    if args.gallery is not None:
        gallery.check_output(args.gallery)  # fail before generating anything
    shift = sc.SceneShift(
        palette=args.palette, texture=args.texture, noise=args.noise, blur=args.blur, night=args.night
    )
    if args.view == "classification":
        view = sc.ClassificationView(shift=shift)
        per_class = -(-args.n // len(view.shapes))
        data = sc.make_scene_classification(per_class, args.image_size or 32, args.seed, view)
        data = data.take(torch.arange(args.n))
        if args.gallery is None:
            print(
                f"{data.name}: {len(view.shapes)} classes ({', '.join(data.classes)}), label = the main object's shape"
            )
            print(f"view: {view}")
            return 0
        print(f"wrote {gallery.classification_gallery(data, args.gallery)}")
        return 0
    landslide = args.view == "landslide"
    lo, hi = _object_range(args.objects, (0, 0) if landslide else (2, 5))
    cfg = sc.SceneConfig(
        image_size=args.image_size or 64,
        min_objects=lo,
        max_objects=hi,
        height=args.height or landslide,
        landslide=landslide,
        caption_noise=args.caption_noise,
        shift=shift,
    )
    if args.view == "clips":
        clips = sc.make_clips(args.n, args.frames, cfg, args.seed)
        if args.gallery is None:
            print(f"{len(clips)} clips of {args.frames} frames, {cfg.image_size} px; config {sc.config_key(cfg)}")
            return 0
        print(f"wrote {gallery.clip_gallery(clips, args.gallery)}")
        return 0
    scenes = sc.make_scenes(args.n, cfg, args.seed)
    if args.gallery is not None:
        print(f"wrote {gallery.scene_gallery(scenes, args.gallery)}")
        return 0
    print(f"scenes {cfg.image_size} px, config hash {sc.config_key(cfg)}: {cfg}")
    print("first sample:")
    for obj in scenes.object_list(0):
        print(f"  {obj['size']} {obj['colour']} {obj['shape']} at {obj['position']} (depth {obj['depth']})")
    for caption in scenes.captions[0]:
        print(f"  caption: {caption}")
    return 0


def _presets_text(entry) -> str:
    """Each preset with its description and arms (the floor arm and headline comparisons marked)."""
    lines = []
    for name, exp in entry.presets.items():
        lines.append(f"  {name}: {exp.description}")
        lines.append(f"    arms: {', '.join(exp.arms)}")
        lines += [f"    {'headline' if c.headline else 'also'}: {c.label}" for c in exp.comparisons]
    return "\n".join(lines)


def _run_help_epilog(argv: list[str]) -> str | None:
    """For ``repro run <paper> --help``: the paper's presets and their arms."""
    words = [w for w in argv[1:] if not w.startswith("-")]
    if not words:
        return None
    from shared.registry import UnknownPaperError, find_paper

    try:
        entry = find_paper(words[0])
    except (UnknownPaperError, ImportError, TypeError):
        return None
    if not entry.implemented:
        return None
    return f"presets of {entry.package} (--preset) and their arms (--arms):\n{_presets_text(entry)}"


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()
    if argv[:1] == ["run"] and {"-h", "--help"} & set(argv):
        epilog = _run_help_epilog(argv)
        if epilog:
            run_parser = parser._subparsers._group_actions[0].choices["run"]
            run_parser.epilog = epilog
            run_parser.formatter_class = argparse.RawDescriptionHelpFormatter
    args = parser.parse_args(argv)
    from shared.data.errors import DataUnavailableError
    from shared.engine import NonFiniteLossError
    from shared.registry import UnknownPaperError
    from shared.results import RecordError

    try:
        if args.command == "list":
            return _cmd_list()
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "data":
            return _cmd_data(args)
        return _cmd_show(args)
    except (UnknownPaperError, ValueError, TypeError, DataUnavailableError, NonFiniteLossError, RecordError) as exc:
        print(f"repro: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, (UnknownPaperError, ValueError, TypeError)) else 1
    except BrokenPipeError:  # stdout closed early (`repro show dcl | head`): not an error
        _silence_stdout()
        return 0
    except OSError as exc:
        print(f"repro: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.command == "run":
            print(
                "\nrepro: interrupted; rerun the same command with --resume to continue where it stopped",
                file=sys.stderr,
            )
        return 130


def _silence_stdout() -> None:
    """Point stdout at devnull, so the interpreter's final flush into a closed pipe stays quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def entry_point() -> None:
    """The console script (``repro``)."""
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    sys.exit(code)


if __name__ == "__main__":
    entry_point()
