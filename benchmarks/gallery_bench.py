"""The gallery table of docs/custom-modules.md: every community family of examples/modules/ pruned to a GFLOPs
target with `lamp`, counted, timed and exported.

Per gallery model (its yaml's own width, random initialisation with a fixed seed: pruning's structure does
not depend on training): the share of the family's own conv channels lamp pruned, the layers kept
whole and why (the guard's skip list), GFLOPs before/after and the ratio reached, parameters, CPU latency of
the original and the lamp-pruned model (timed interleaved, `core.stats.interleaved_latency`), and ONNX
(export of the pruned model at the default opset, onnxruntime parity or the reason it was not checked).

Rows are kept in a JSON file as they finish, so an interrupted run resumes where it stopped. Run (about a
minute per model on a 2-core CPU):
    nice -n 10 python benchmarks/gallery_bench.py --out runs/gallery_bench.json --write-doc
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

from yolocompress.core.stats import count_gflops, count_params, interleaved_latency, uncounted_modules
from yolocompress.models.builder import Model, load_config
from yolocompress.models.export import choose_opset, export_onnx, parity_or_reason
from yolocompress.models.layers import input_layers, layer_channels, user_module_layers
from yolocompress.models.registry import load_user_modules
from yolocompress.prune.speedup import prune_to_target

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "modules"
DOC = ROOT / "docs" / "custom-modules.md"
BEGIN, END = "<!-- gallery-table:begin -->", "<!-- gallery-table:end -->"
KNOWN_BAD = {"fasternet-inplace"}
METHODS = ("lamp",)  # the shares per method (lamp, group_norm, pagcp) are asserted in tests/prune
LOGGER = logging.getLogger("yolocompress")


def gallery() -> list[tuple[str, str, str]]:
    spec = importlib.util.spec_from_file_location("gallery_make_yamls", EXAMPLES / "make_yamls.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.gallery()


def build(yaml_name: str, modules: str, nc: int, seed: int = 0) -> Model:
    load_user_modules([EXAMPLES / modules])
    cfg = load_config(EXAMPLES / yaml_name)
    cfg["nc"] = nc
    torch.manual_seed(seed)
    return Model(cfg)


def measure_entry(family: str, yaml_name: str, modules: str, a) -> dict:
    model = build(yaml_name, modules, a.nc)
    own = user_module_layers(model, modules)
    if not layer_channels(model, own):  # no channels of its own (ECA): the share is that of the layers feeding it
        own = input_layers(model, own)
    row = {"family": family, "yaml": yaml_name, "layers": own, "params_before": count_params(model),
           "gflops_before": count_gflops(model, a.imgsz), "uncounted": uncounted_modules(model),
           "channels_before": layer_channels(model, own)}
    example = torch.rand(1, 3, 64, 64)
    pruned = {}
    for method in METHODS:
        m = build(yaml_name, modules, a.nc)
        t0 = time.time()
        try:
            out = prune_to_target(m, example, method, a.speedup, imgsz=a.imgsz, max_steps=a.max_steps,
                                  measure=False)
        except Exception as e:  # one row says what failed; the table goes on
            row[method] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
            continue
        prefixes = tuple(f"model.{i}." for i in own)
        kept = [s for s in out.skipped if s.get("layer") in own
                or any(f"{h}.".startswith(prefixes) for h in s.get("holds", ()))]
        row[method] = {"speedup": out.speedup_gflops, "params_after": out.params_after,
                       "gflops_after": out.gflops_after,
                       "family_share": 1 - layer_channels(out.model, own) / max(row["channels_before"], 1),
                       "kept": [f"layer {s['layer']} {s['module']}: {s['reason']}" for s in kept],
                       "seconds": time.time() - t0}
        pruned[method] = out.model
    target = pruned.get("lamp")
    if target is not None:
        base, small = interleaved_latency([model, target], a.imgsz, 1, "cpu", rounds=a.latency_rounds)
        row["latency_ms"] = [base, small]
    row["onnx"] = onnx_status(target if target is not None else model, a.imgsz)
    return row


def onnx_status(model: nn.Module, imgsz: int) -> str:
    opset = choose_opset(model, None)
    with tempfile.TemporaryDirectory() as d:
        try:
            path = export_onnx(model, Path(d) / "m.onnx", imgsz=imgsz)
            diff, reason = parity_or_reason(path, model, imgsz)
        except Exception as e:
            return f"fails: {str(e).splitlines()[0][:160]}"
    return f"opset {opset}, not run: {reason}" if reason else f"opset {opset}, ORT diff {diff:.1e}"


def markdown(rows: list[dict], meta: dict) -> str:
    head = ("| model | family channels pruned | GFLOPs before -> after (ratio) | params before / after | "
            "CPU ms before / after | ONNX of the pruned model | kept whole (reason) |")
    runs = "; then ".join(f"`{r['command']}` at commit {r['commit']} ({r['date']})" for r in meta["runs"])
    lines = [f"Measured by {runs}, {meta['machine']}; GFLOPs and latency at {meta['imgsz']} px, batch 1, "
             f"target {meta['speedup']}x GFLOPs, lamp, random initialisation (seed 0).", "", head,
             "|" + "---|" * 7]
    for r in rows:
        def share(method):
            res = r.get(method, {})
            return f"error: {res['error']}" if "error" in res else f"{res['family_share']:.0%}"
        lamp = r.get("lamp", {})
        g = (f"{r['gflops_before']:.2f} -> {lamp['gflops_after']:.2f} ({lamp['speedup']:.2f}x)"
             if "speedup" in lamp else f"{r['gflops_before']:.2f}")
        p = f"{r['params_before']:,} / {lamp['params_after']:,}" if "params_after" in lamp else f"{r['params_before']:,}"
        lat = "{:.1f} / {:.1f}".format(*r["latency_ms"]) if "latency_ms" in r else ""
        onnx = r["onnx"] if "speedup" in lamp else f"(unpruned model) {r['onnx']}"
        kept = "; ".join(sorted({k for m in METHODS for k in r.get(m, {}).get("kept", [])})) or "none"
        lines.append(f"| {r['yaml'].removesuffix('.yaml')} | {share('lamp')} | {g} | {p} | "
                     f"{lat} | {onnx} | {kept} |")
    return "\n".join(lines)


def write_doc(table: str) -> None:
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"error: {DOC} lacks the markers {BEGIN} / {END}; add them where the table goes")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n" + table + "\n" + text[end:])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/gallery_bench.json", help="results file, resumed row by row")
    ap.add_argument("--imgsz", type=int, default=320, help="image size for GFLOPs, latency and ONNX")
    ap.add_argument("--nc", type=int, default=10, help="classes of the models' heads")
    ap.add_argument("--speedup", type=float, default=2.0, help="GFLOPs ratio each method prunes to")
    ap.add_argument("--max-steps", type=int, default=30, help="pruning steps to reach the target (coarser: faster)")
    ap.add_argument("--latency-rounds", type=int, default=3, help="interleaved timing passes")
    ap.add_argument("--only", nargs="*", default=None, help="gallery yaml names (default: all)")
    ap.add_argument("--redo", action="store_true", help="measure the --only rows again even if the file has them")
    ap.add_argument("--write-doc", action="store_true", help="write the table into docs/custom-modules.md")
    ap.add_argument("--render", action="store_true", help="measure nothing: print (and --write-doc) the table")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.ERROR)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out.read_text()) if out.is_file() else {"rows": {}}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    if a.render:
        table = markdown([results["rows"][y] for _, y, _ in gallery() if y in results["rows"]], results["meta"])
        print(table)
        if a.write_doc:
            write_doc(table)
        return
    run = {"command": "python benchmarks/gallery_bench.py " + " ".join(argv or sys.argv[1:]), "commit": commit,
           "date": time.strftime("%Y-%m-%d")}
    results["meta"] = {"runs": results.get("meta", {}).get("runs", []) + [run],
                       "machine": f"2-core CPU VM ({platform.processor() or platform.machine()}), shared",
                       "imgsz": a.imgsz, "speedup": a.speedup}
    for family, yaml_name, modules in gallery():
        if family in KNOWN_BAD or (a.only and yaml_name not in a.only) or \
                (yaml_name in results["rows"] and not (a.redo and a.only)):
            continue
        t0 = time.time()
        results["rows"][yaml_name] = measure_entry(family, yaml_name, modules, a)
        out.write_text(json.dumps(results, indent=1))
        print(f"{yaml_name}: {time.time() - t0:.0f}s", flush=True)
    rows = [results["rows"][y] for _, y, _ in gallery() if y in results["rows"]]
    table = markdown(rows, results["meta"])
    print(table)
    if a.write_doc:
        write_doc(table)


if __name__ == "__main__":
    main()
