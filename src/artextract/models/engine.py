"""The inference engine: every frozen forward pass of a backbone goes through :class:`FeatureEngine`.

One call takes a batch of normalised images ``[B, 3, S, S]`` and returns the backbone's map
``[B, C, h, w]``, its pooled vector ``[B, P]`` and its style statistics ``[B, D]`` (the taps are outputs
of the one graph). Feature stores, ``predict``, the web app's uploads, similar-by-image and the report all
call it; training and Grad-CAM keep torch, since they need gradients.

==============  ======================================================================================
engine          what runs the graph
==============  ======================================================================================
``torch``       PyTorch. On a CPU the input keeps the NHWC layout of the prepared images, bf16 under
                autocast when asked; on CUDA, channels_last and fp16 autocast by default.
``openvino``    OpenVINO's CPU plugin, converted straight from the torch module (no ONNX), compiled for
                ``f32`` or ``bf16``. The converted model is cached on disk per backbone, input size and
                weights hash (:func:`engine_cache_dir`), so a second run starts in seconds; changed
                weights make a new entry.
``auto``        ``openvino`` on a CPU when it is installed, else ``torch``.
==============  ======================================================================================

Precision: ``fp32`` (the default on a CPU) matches torch to about 1e-5 of the largest output; ``bf16``
is opt-in, faster and lossy (its effect on the downstream figures is in docs/benchmarks.md). A feature
store records its engine and precision, and reduced-precision stores have names of their own.

Threads: :func:`configure` sets the engine, precision and thread count for the process (the CLI's
``--engine``, ``--precision`` and ``--threads``); under ``torchrun`` every rank takes its share of the
cores unless ``--threads`` says otherwise, so ranks never oversubscribe the machine.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import EngineUnavailable
from .backbones import Backbone

logger = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "openvino")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ENGINE_FORMAT = 1  # bump when the exported graph's outputs change


@dataclass
class EngineSettings:
    engine: str = "auto"
    precision: str = "auto"
    threads: int | None = None


settings = EngineSettings()


def configure(engine: str | None = None, precision: str | None = None, threads: int | None = None) -> EngineSettings:
    """Set the process's engine, precision and thread count (what ``--engine/--precision/--threads`` do).

    Parameters
    ----------
    engine : {"auto", "torch", "openvino"}, optional
    precision : {"auto", "fp32", "bf16", "fp16"}, optional
    threads : int, optional
        Threads for the forward pass; default: the cores, divided among the ``torchrun`` ranks of this
        machine.

    Returns
    -------
    EngineSettings
    """
    if engine is not None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}")
        settings.engine = engine
    if precision is not None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
        settings.precision = precision
    if threads is not None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        settings.threads = threads
    n = default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return settings


def default_threads() -> int:
    """``--threads`` if given, else this machine's cores divided among its ``torchrun`` ranks."""
    if settings.threads:
        return settings.threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, cores // max(1, local))


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def resolve(engine: str | None = None, precision: str | None = None,
            device: torch.device | None = None) -> tuple[str, str]:
    """The engine and precision that ``auto`` means here.

    Returns
    -------
    (engine, precision) : tuple of str
        engine in {"torch", "openvino"}, precision in {"fp32", "bf16", "fp16"}.
    """
    engine = engine or settings.engine
    precision = precision or settings.precision
    cuda = device is not None and device.type == "cuda"
    if engine == "auto":
        engine = "openvino" if not cuda and openvino_available() else "torch"
    if engine == "openvino" and cuda:
        raise EngineUnavailable("the openvino engine runs on the CPU; use --engine torch on a GPU")
    if engine == "openvino" and not openvino_available():
        raise EngineUnavailable("the openvino engine needs the openvino package: pip install openvino")
    if precision == "auto":
        precision = "fp16" if cuda else "fp32"
    if precision == "fp16" and not cuda:
        raise EngineUnavailable("fp16 is for GPUs; on a CPU use --precision bf16 (or fp32)")
    return engine, precision


def store_suffix(precision: str) -> str:
    """The feature-store name suffix of a precision: reduced-precision features never share a store with
    fp32 ones."""
    return "" if precision == "fp32" else f"-{precision}"


def weights_hash(module: nn.Module) -> str:
    """A digest of a module's parameters and buffers (names, shapes and bytes)."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        t = v.detach().cpu().contiguous().reshape(-1)
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def engine_cache_dir() -> Path:
    """Where converted models are kept (:func:`artextract.workspace.engine_cache_dir`)."""
    from ..workspace import engine_cache_dir as rule
    return rule()


_COMPILED: dict = {}  # (graph key, precision, threads) -> compiled model, for the life of the process


class _AllOutputs(nn.Module):
    def __init__(self, backbone: Backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone.forward_all(x)


class FeatureEngine:
    """Runs a frozen backbone: ``engine(x) -> (map, pooled, stats)``, float32 CPU tensors.

    Parameters
    ----------
    backbone : Backbone
    engine, precision : str, optional
        See the module docstring; default: the process's settings (:func:`configure`).
    device : torch.device, optional
        Where the torch engine runs (default: CUDA if available, else the CPU).
    """

    def __init__(self, backbone: Backbone, *, engine: str | None = None, precision: str | None = None,
                 device: torch.device | None = None):
        if device is None:
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.backbone = backbone.eval()
        self.device = device
        self.engine, self.precision = resolve(engine, precision, device)
        self.threads = default_threads()
        self._compiled = None
        self._lock = threading.Lock()
        if self.engine == "torch":
            self.backbone.to(device)
            if device.type == "cuda":
                self.backbone.to(memory_format=torch.channels_last)

    @property
    def size(self) -> int:
        return self.backbone.preprocess.size

    def describe(self) -> dict:
        return {"engine": self.engine, "precision": self.precision, "threads": self.threads}

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.engine == "openvino":
            return self._openvino(x)
        return self._torch(x)

    # ------------------------------------------------------------------ torch
    def _torch(self, x: torch.Tensor):
        # on a GPU, channels_last; on a CPU the module stays contiguous and the input keeps the NHWC layout
        # of the prepared images (faster here than channels_last weights: 134 against 106 views/s, MobileNetV2)
        x = x.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            fm, pv, sv = self.backbone.forward_all(x)
        return fm.float().cpu(), pv.float().cpu(), sv.float().cpu()

    # ------------------------------------------------------------------ openvino
    def _openvino(self, x: torch.Tensor):
        """The batch split over the compiled model's streams (one per thread), run asynchronously: each
        stream goes at its own pace, so work that shares the cores (decoding in worker processes) slows
        one stream instead of stalling every thread at each layer's barrier."""
        import openvino as ov

        arr = np.ascontiguousarray(x.detach().float().cpu().numpy())
        with self._lock:
            if self._compiled is None:
                self._compiled = self._compile(x.shape[-1])
                self._streams = max(1, int(self._compiled.get_property("NUM_STREAMS")))
                self._queue = ov.AsyncInferQueue(self._compiled, self._streams)
            n = min(self._streams, len(arr))
            bounds = np.linspace(0, len(arr), n + 1).astype(int)
            parts: list = [None] * n

            def done(request, i):
                parts[i] = [np.array(request.get_output_tensor(k).data, np.float32, copy=True) for k in range(3)]

            self._queue.set_callback(done)
            for i in range(n):
                self._queue.start_async(arr[bounds[i]:bounds[i + 1]], i)
            self._queue.wait_all()
        fm, pv, sv = (torch.from_numpy(np.concatenate([p[k] for p in parts])) for k in range(3))
        return fm, pv, sv

    def _compile(self, size: int):
        import openvino as ov
        root = engine_cache_dir()
        key = f"{self.backbone.name}|{size}|{weights_hash(self.backbone)}|{ov.__version__}|{ENGINE_FORMAT}"
        tag = self.backbone.name.replace(":", "_").replace("/", "_").replace("@", "_")
        folder = root / f"{tag}-{size}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"
        memo = (str(folder), self.precision, self.threads)
        if memo in _COMPILED and (folder / "model.xml").is_file():  # compiled earlier in this process
            return _COMPILED[memo]
        core = ov.Core()
        xml = folder / "model.xml"
        if xml.is_file():
            model = core.read_model(str(xml))
            logger.debug("openvino: reusing the converted %s from %s", self.backbone.name, folder)
        else:
            logger.info("converting %s (%d px) for OpenVINO (once; kept in %s)", self.backbone.name, size, folder)
            import warnings
            with warnings.catch_warnings():  # the tracer's notes on shape arithmetic, fixed for one input size
                warnings.simplefilter("ignore")
                model = ov.convert_model(_AllOutputs(self.backbone.float().cpu()),
                                         example_input=torch.zeros(1, 3, size, size),
                                         input=[ov.PartialShape([-1, 3, size, size])])
            try:
                folder.mkdir(parents=True, exist_ok=True)
                tmp = folder / f"model.{os.getpid()}.xml"
                ov.save_model(model, str(tmp), compress_to_fp16=False)
                os.replace(tmp.with_suffix(".bin"), folder / "model.bin")
                os.replace(tmp, xml)
            except OSError as exc:  # a read-only home: convert again next time
                logger.warning("cannot keep the converted model in %s (%s)", folder, exc)
        config = {"INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
                  "INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "THROUGHPUT",
                  "NUM_STREAMS": self.threads}
        try:
            (root / "compiled").mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(root / "compiled")
        except OSError:
            pass
        compiled = core.compile_model(model, "CPU", config)
        _COMPILED[memo] = compiled
        return compiled
