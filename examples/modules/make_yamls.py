"""Regenerate the gallery's model yamls from the shipped yolov5n / yolov7-tiny layouts.

Each entry names the edits a user makes to a stock yaml to add a family: `replace` rows by index, `insert`
rows after an index (`redirect=True`: later layers that read that index read the last inserted row instead),
or a whole new `head`. Indices in edits are the stock file's; a negative `from` is relative as usual; a
string `from` names an inserted row by its label. Run: `python examples/modules/make_yamls.py`.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from yolocompress.models.builder import load_config

HERE = Path(__file__).resolve().parent
V5, V7 = "yolov5n", "yolov7-tiny"
LRELU = "nn.LeakyReLU(0.1)"


def c3_rows(module, backbone_shortcut=True):
    """YOLOv5n's eight C3 rows with `module` in their place (the backbone's with shortcuts, the neck's without)."""
    widths = {2: 128, 4: 256, 6: 512, 8: 1024, 13: 512, 17: 256, 20: 512, 23: 1024}
    return {i: [-1, 1, module, [c] if i < 10 and backbone_shortcut else [c, False]] for i, c in widths.items()}


def v7_elan_outs(module):
    """yolov7-tiny's backbone ELAN output convs (after each concat) replaced by `module`."""
    return {7: [-1, 1, module, [64]], 14: [-1, 1, module, [128]], 21: [-1, 1, module, [256]],
            28: [-1, 1, module, [512]]}


V7_HEAD_CONVS = (74, 128), (75, 256), (76, 512)

FAMILIES = {
    # name: (base, modules file, what the yaml changes, edits)
    "c2f": [(V5, "c2f.py", "C2f (chunk) in place of every C3", dict(replace=c3_rows("C2f"))),
            (V7, "c2f.py", "C2f (chunk) in place of the backbone's ELAN output convs",
             dict(replace=v7_elan_outs("C2f")))],
    "c2f-split": [(V5, "c2f.py", "C2f written with torch.split in place of every C3",
                   dict(replace=c3_rows("C2fSplit"))),
                  (V7, "c2f.py", "C2f written with torch.split in place of the backbone's ELAN output convs",
                   dict(replace=v7_elan_outs("C2fSplit")))],
    "fasternet": [(V5, "fasternet.py", "C3Faster (FasterNet blocks, PConv by slicing) in the backbone",
                   dict(replace={i: r for i, r in c3_rows("C3Faster").items() if i < 10})),
                  (V7, "fasternet.py", "C3Faster in place of two ELAN output convs",
                   dict(replace={14: [-1, 1, "C3Faster", [128]], 21: [-1, 1, "C3Faster", [256]]}))],
    "fasternet-inplace": [(V5, "fasternet.py", "KNOWN BAD: PConv with an in-place slice write (fails in "
                           "training)", dict(replace={i: r for i, r in c3_rows("C3FasterInplace").items()
                                                      if i < 10}))],
    "ghost": [(V5, "ghost.py", "GhostConv for the strided convs, C3Ghost for every C3",
               dict(replace={**c3_rows("C3Ghost"), **{i: [-1, 1, "GhostConv", [c, 3, 2]] for i, c in
                                                      ((1, 128), (3, 256), (5, 512), (7, 1024))}})),
              (V7, "ghost.py", "GhostConv for the backbone's 3x3 convs",
               dict(replace={i: [-1, 1, "GhostConv", [c, 3, 1]] for i, c in
                             ((4, 32), (5, 32), (11, 64), (12, 64), (18, 128), (19, 128), (25, 256),
                              (26, 256))}))],
    "cbam": [(V5, "attention.py", "CBAM after the P4 and P5 backbone stages",
              dict(insert={6: [[-1, 1, "CBAM", [512]]], 8: [[-1, 1, "CBAM", [1024]]]}, redirect=True)),
             (V7, "attention.py", "CBAM after the backbone", dict(insert={28: [[-1, 1, "CBAM", [512]]]}, redirect=True))],
    "eca": [(V5, "attention.py", "ECA after the P4 and P5 backbone stages",
             dict(insert={6: [[-1, 1, "ECA", [512]]], 8: [[-1, 1, "ECA", [1024]]]}, redirect=True)),
            (V7, "attention.py", "ECA after the backbone", dict(insert={28: [[-1, 1, "ECA", [512]]]}, redirect=True))],
    "se": [(V5, "attention.py", "SE after the P4 and P5 backbone stages",
            dict(insert={6: [[-1, 1, "SE", [512]]], 8: [[-1, 1, "SE", [1024]]]}, redirect=True)),
           (V7, "attention.py", "SE after the backbone", dict(insert={28: [[-1, 1, "SE", [512]]]}, redirect=True))],
    "bifpn": [(V5, "bifpn.py", "BiFPN weighted adds in place of the neck's concats",
               dict(replace={12: [[-1, 6], 1, "BiFPN_Add2", [512]], 16: [[-1, 4], 1, "BiFPN_Add2", [256]],
                             19: [[-1, 14], 1, "BiFPN_Add2", [256]], 22: [[-1, 10], 1, "BiFPN_Add2", [512]]})),
              (V7, "bifpn.py", "BiFPN weighted adds in place of the neck's two-input concats",
               dict(replace={41: [[-1, -2], 1, "BiFPN_Add2", [128]], 51: [[-1, -2], 1, "BiFPN_Add2", [64]],
                             59: [[-1, 47], 1, "BiFPN_Add2", [128]], 67: [[-1, 37], 1, "BiFPN_Add2", [256]]}))],
    "decoupled-head": [(V5, "decoupled_head.py", "a YOLOX-style decoupled head in place of Detect",
                        dict(replace={24: [[17, 20, 23], 1, "DecoupledDetect", ["nc", "anchors"]]})),
                       (V7, "decoupled_head.py", "a YOLOX-style decoupled head in place of IDetect",
                        dict(replace={77: [[74, 75, 76], 1, "DecoupledDetect", ["nc", "anchors"]]}))],
    "dcn": [(V5, "dcn.py", "DCNv2 for the two last strided backbone convs",
             dict(replace={5: [-1, 1, "DCNv2", [512, 3, 2]], 7: [-1, 1, "DCNv2", [1024, 3, 2]]})),
            (V7, "dcn.py", "DCNv2 for the three 3x3 convs before the head",
             dict(replace={i: [f, 1, "DCNv2", [c, 3, 1]] for i, (f, c) in
                           zip((74, 75, 76), ((57, 128), (65, 256), (73, 512)))}))],
    "transformer": [(V5, "transformer.py", "C3TR (YOLOv5's transformer C3) as the last backbone stage",
                     dict(replace={8: [-1, 1, "C3TR", [1024]]})),
                    (V7, "transformer.py", "C3TR in place of the backbone's last conv",
                     dict(replace={28: [-1, 1, "C3TR", [512]]}))],
    "mhsa": [(V5, "transformer.py", "a BoTNet-style MHSA after the backbone",
              dict(insert={8: [[-1, 1, "MHSA", [1024, 4]]]}, redirect=True))],
    "mobilenetv3": [(V5, "mobilenetv3.py", "a MobileNetV3 backbone (SE and hard-swish in the deeper blocks)",
                     dict(replace={0: [-1, 1, "Conv_BN_HSwish", [64, 2]],
                                   1: [-1, 1, "MobileNetV3Block", [128, 3, 2, 4, False, False]],
                                   2: [-1, 1, "MobileNetV3Block", [128, 3, 1, 3, False, False]],
                                   3: [-1, 1, "MobileNetV3Block", [256, 5, 2, 3, True, True]],
                                   4: [-1, 1, "MobileNetV3Block", [256, 5, 1, 3, True, True]],
                                   5: [-1, 1, "MobileNetV3Block", [512, 3, 2, 4, True, True]],
                                   6: [-1, 1, "MobileNetV3Block", [512, 3, 1, 4, True, True]],
                                   7: [-1, 1, "MobileNetV3Block", [1024, 5, 2, 4, True, True]],
                                   8: [-1, 1, "MobileNetV3Block", [1024, 5, 1, 4, True, True]]}))],
    "repvit": [(V5, "repvit.py", "a RepViT backbone",
                dict(replace={1: [-1, 1, "RepViTBlock", [128, 2]], 2: [-1, 1, "RepViTBlock", [128, 1, False]],
                              3: [-1, 1, "RepViTBlock", [256, 2]], 4: [-1, 1, "RepViTBlock", [256, 1]],
                              5: [-1, 1, "RepViTBlock", [512, 2]], 6: [-1, 1, "RepViTBlock", [512, 1, False]],
                              7: [-1, 1, "RepViTBlock", [1024, 2]], 8: [-1, 1, "RepViTBlock", [1024, 1]]}))],
    "dbb": [(V5, "dbb.py", "DiverseBranchBlock for the strided backbone convs",
             dict(replace={i: [-1, 1, "DiverseBranchBlock", [c, 3, 2]] for i, c in
                           ((1, 128), (3, 256), (5, 512), (7, 1024))})),
            (V7, "dbb.py", "DiverseBranchBlock for the three 3x3 convs before the head",
             dict(replace={i: [f, 1, "DiverseBranchBlock", [c, 3, 1]] for i, (f, c) in
                           zip((74, 75, 76), ((57, 128), (65, 256), (73, 512)))}))],
    "lsk": [(V5, "lsk.py", "LSKBlock after the backbone", dict(insert={8: [[-1, 1, "LSKBlock", [1024]]]}, redirect=True)),
            (V7, "lsk.py", "LSKBlock after the backbone", dict(insert={28: [[-1, 1, "LSKBlock", [512]]]}, redirect=True))],
    "gsconv": [(V5, "gsconv.py", "a slim neck: GSConv for the neck's convs, VoVGSCSP for its C3s",
                dict(replace={10: [-1, 1, "GSConv", [512, 1, 1]], 14: [-1, 1, "GSConv", [256, 1, 1]],
                              18: [-1, 1, "GSConv", [256, 3, 2]], 21: [-1, 1, "GSConv", [512, 3, 2]],
                              **{i: r for i, r in c3_rows("VoVGSCSP").items() if i > 10}})),
               (V7, "gsconv.py", "GSConv for the three 3x3 convs before the head",
                dict(replace={i: [f, 1, "GSConv", [c, 3, 1]] for i, (f, c) in
                              zip((74, 75, 76), ((57, 128), (65, 256), (73, 512)))}))],
    "afpn": [(V5, "afpn.py", "an AFPN-style neck (adaptive spatial fusion, adjacent levels first)",
              dict(head=[[4, 1, "Conv", [256, 1, 1]], [6, 1, "Conv", [256, 1, 1]], [9, 1, "Conv", [256, 1, 1]],
                         [[10, 11], 1, "ASFF_2", [256, 0]], [[10, 11], 1, "ASFF_2", [256, 1]],
                         [[13, 14, 12], 1, "ASFF_3", [256, 0]], [[13, 14, 12], 1, "ASFF_3", [512, 1]],
                         [[13, 14, 12], 1, "ASFF_3", [1024, 2]], [[15, 16, 17], 1, "Detect", ["nc", "anchors"]]]))],
    "dyhead": [(V5, "dyhead.py", "a DyHead block before each input of Detect",
                dict(insert={23: [["p3", 17, 1, "DyHeadBlock", [256]], ["p4", 20, 1, "DyHeadBlock", [512]],
                                 ["p5", 23, 1, "DyHeadBlock", [1024]]]},
                     replace={24: [["p3", "p4", "p5"], 1, "Detect", ["nc", "anchors"]]}))],
    "goldyolo": [(V5, "goldyolo.py", "Gold-YOLO-style gather (backbone P3-P5) and inject into each output level",
                  dict(insert={9: [[[4, 6, 9], 1, "GDGather", [1]], ["global", -1, 1, "Conv", [512, 1, 1]]],
                               17: [["global", 1, "Conv", [256, 1, 1]], [[17, -1], 1, "GDInject", [256]]],
                               20: [["global", 1, "Conv", [512, 1, 1]], [[20, -1], 1, "GDInject", [512]]],
                               23: [["global", 1, "Conv", [1024, 1, 1]], [[23, -1], 1, "GDInject", [1024]]]},
                       redirect=True, no_redirect=(9,)))],
    "sppfcspc": [(V5, "spp.py", "SPPFCSPC in place of SPPF", dict(replace={9: [-1, 1, "SPPFCSPC", [1024]]}))],
    "simsppf": [(V5, "spp.py", "SimSPPF (ReLU convs) in place of SPPF", dict(replace={9: [-1, 1, "SimSPPF", [1024, 5]]}))],
}


def _froms(f):
    return f if isinstance(f, list) else [f]


def edit_layers(rows: list, replace=None, insert=None, redirect=False, no_redirect=(), head=None) -> list:
    """The stock `rows` with the edits applied; every `from` of the result is an index of the new list.

    Stock and replaced rows read stock indices (negative: relative to their stock position); an inserted row's
    negative `from` is relative to its new position, a non-negative one a stock index, a string a label."""
    replace, insert = dict(replace or {}), dict(insert or {})
    entries, pos, ref, labels = [], {}, {}, {}  # entries: (is_stock, stock index, row)
    for i, row in enumerate(rows):
        entries.append((True, i, replace.get(i, row)))
        pos[i] = ref[i] = len(entries) - 1
        for extra in insert.get(i, []):
            if isinstance(extra[0], str) and len(extra) == 5:
                labels[extra[0]] = len(entries)
                extra = extra[1:]
            entries.append((False, i, extra))
            if redirect and i not in no_redirect:
                ref[i] = len(entries) - 1
    out = []
    for j, (is_stock, i, (f, n, name, args)) in enumerate(entries):
        resolved = []
        for x in _froms(f):
            if isinstance(x, str):
                a = labels[x]
            elif j == 0:
                a = -1  # the image
            elif is_stock:
                a = ref[i + x if x < 0 else x]
            else:
                a = j + x if x < 0 else pos[x]
            resolved.append(-1 if a == j - 1 else x if isinstance(x, int) and x < 0 and j + x == a else a)
        out.append([resolved if isinstance(f, list) else resolved[0], n, name, args])
    return out


def _fmt(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if v is None or isinstance(v, (bool, int, float)):
        return str(v)
    return v if v in ("nc", "anchors") or v.startswith("nn.") else f"'{v}'" if " " in v or v == "nearest" else v


def render(base: str, modules_file: str, what: str, edits: dict) -> str:
    cfg = load_config(f"{base}.yaml")
    nb = len(cfg["backbone"])
    rows = edit_layers(cfg["backbone"] + cfg["head"], **edits)
    n_backbone = nb + sum(len(v) for k, v in edits.get("insert", {}).items() if k < nb)
    if "head" in edits:
        rows = rows[:nb] + edits["head"]
    lines = [f"# {base} with {what}.",
             f"# Train/prune with `--modules examples/modules/{modules_file}`; written by examples/modules/make_yamls.py.",
             f"nc: {cfg['nc']}", f"depth_multiple: {cfg['depth_multiple']}", f"width_multiple: {cfg['width_multiple']}",
             "anchors:", *(f"  - {_fmt(a)}" for a in cfg["anchors"]), "backbone:  # [from, number, module, args]"]
    for i, r in enumerate(rows):
        if i == n_backbone:
            lines.append("head:")
        lines.append(f"  - {_fmt(r)}  # {i}")
    return "\n".join(lines) + "\n"


def gallery() -> list[tuple[str, str, str]]:
    """(family, yaml file name, modules file) of every gallery model."""
    return [(fam, f"{base}-{fam}.yaml", mod) for fam, variants in FAMILIES.items() for base, mod, _, _ in variants]


def main():
    for fam, variants in FAMILIES.items():
        for base, mod, what, edits in variants:
            (HERE / f"{base}-{fam}.yaml").write_text(render(base, mod, what, edits))


if __name__ == "__main__":
    main()
