#!/usr/bin/env python3
"""Reference top-1 for osprey's classifier: onnxruntime (CPU) + Pillow, torchvision-style
preprocessing (shorter side -> 256 bilinear, centre crop 224, ImageNet mean/std, NCHW f32).

Usage (a venv with `pip install onnxruntime Pillow numpy`):
  scripts/classify_reference.py MODEL.onnx INPUT_NAME IMAGES_DIR LABELS.txt > out.csv
  scripts/classify_reference.py --bench MODEL.onnx INPUT_NAME   # inference-only images/s

CSV columns: file, top1_index, top1_label, top1_probability.
"""
import csv
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def preprocess(path):
    img = Image.open(path).convert("RGB")
    w, h = img.size
    # torchvision Resize(256): shorter side 256, longer int(256 * long / short).
    if w <= h:
        nw, nh = 256, int(256 * h / w)
    else:
        nw, nh = int(256 * w / h), 256
    img = img.resize((nw, nh), Image.BILINEAR)
    left = int(round((nw - 224) / 2.0))
    top = int(round((nh - 224) / 2.0))
    img = img.crop((left, top, left + 224, top + 224))
    x = (np.asarray(img, dtype=np.float32) / 255.0 - MEAN) / STD
    return x.transpose(2, 0, 1)


def session(model):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def main():
    if sys.argv[1] == "--bench":
        model, input_name = sys.argv[2], sys.argv[3]
        s = session(model)
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
        for _ in range(5):
            s.run(None, {input_name: x})
        n, t = 50, time.perf_counter()
        for _ in range(n):
            s.run(None, {input_name: x})
        dt = time.perf_counter() - t
        print(f"{os.path.basename(model)}: {n / dt:.1f} images/s ({1000 * dt / n:.1f} ms/image), 1 thread")
        return
    model, input_name, images, labels = sys.argv[1:5]
    names = [l.strip() for l in open(labels)]
    s = session(model)
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["file", "top1_index", "top1_label", "top1_probability"])
    for f in sorted(os.listdir(images)):
        logits = s.run(None, {input_name: preprocess(os.path.join(images, f))[None]})[0][0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        i = int(p.argmax())
        out.writerow([f, i, names[i], f"{p[i]:.6f}"])


if __name__ == "__main__":
    main()
