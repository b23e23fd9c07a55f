"""The inference engine: every frozen forward pass of a backbone goes through :class:`FeatureEngine`.

One call takes a batch of normalised images ``[B, 3, S, S]`` and returns the backbone's map
``[B, C, h, w]``, its pooled vector ``[B, P]`` and its style statistics ``[B, D]`` (the taps are outputs
of the one graph). :meth:`FeatureEngine.stream` runs whole collections of prepared uint8 images (the
feature stores): with OpenVINO their crop, mirror image and normalisation are part of the graph, and
requests of :data:`PART` images are queued so that the engine never waits for Python. Feature stores, ``predict``, the web app's uploads, similar-by-image and the report all
call it; training and Grad-CAM keep torch, since they need gradients.

==============  ======================================================================================
engine          what runs the graph
==============  ======================================================================================
``torch``       PyTorch. On a CPU the input keeps the NHWC layout of the prepared images, bf16 under
                autocast when asked. On CUDA, channels_last and fp16 autocast by default (fp32 means
                fp32: no TF32); :meth:`FeatureEngine.stream` sends the prepared uint8 images to the
                device and crops, mirrors and normalises them there.
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
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from ..errors import EngineUnavailable
from .backbones import Backbone
from .base import crop_box, images_to_tensor

logger = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "openvino")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ENGINE_FORMAT = 3  # bump when the exported graph's outputs change
PART = int(os.environ.get("ARTEXTRACT_ENGINE_PART", "2"))  # images per OpenVINO request
IN_FLIGHT = 4  # requests per stream: the next ones wait in the engine while Python reads and stores


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
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, available_cores() // max(1, local))


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system says, else the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


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


_COMPILED: dict = {}  # (graph folder, precision, threads) -> compiled model, for the life of the process


class _AllOutputs(nn.Module):
    """The graph of :meth:`FeatureEngine.__call__`: normalised float images in, every output out."""

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone.forward_all(x)


class _FromPrepared(nn.Module):
    """The graph of :meth:`FeatureEngine.stream`: prepared uint8 NHWC images in, every output out. The
    preprocessing of :func:`~artextract.models.base.images_to_tensor` (centre crop, mirror image, scale,
    normalisation) runs inside the engine, with the same operations in the same order."""

    def __init__(self, backbone: Backbone, cache_size: int, view: str):
        super().__init__()
        self.backbone = backbone
        self.offset, self.side = crop_box(cache_size)
        self.flip = view == "flip"
        pre = backbone.preprocess
        self.register_buffer("mean", torch.tensor(pre.mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pre.std).view(3, 1, 1), persistent=False)

    def forward(self, x):
        o, c = self.offset, self.side
        if self.flip:  # the mirror image of the uint8 crop, before the layout changes (cheaper than of floats)
            x = x[:, o:o + c, o:o + c, :].flip(2).permute(0, 3, 1, 2).float().div(255.0)
        else:  # the crop after the layout change (it fuses into it)
            x = x.permute(0, 3, 1, 2).float().div(255.0)[:, :, o:o + c, o:o + c]
        return self.backbone.forward_all((x - self.mean) / self.std)


class FeatureEngine:
    """Runs a frozen backbone: ``engine(x) -> (map, pooled, stats)``, float32 CPU tensors, and
    :meth:`stream` for whole collections of prepared images.

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
        self._graphs: dict = {}  # graph kind -> compiled model
        self._queues: dict = {}  # graph kind -> the request queue of __call__
        self._lock = threading.Lock()
        if self.engine == "torch":
            self.backbone.to(device)
            if device.type == "cuda":
                self.backbone.to(memory_format=torch.channels_last)
                torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick each layer's kernel once

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

    def stream(self, batches: Iterable, *, view: str = "center", size: int | None = None,
               maps_dtype=np.float32) -> Iterator[tuple]:
        """Run batches of prepared images through the backbone, the next batches queued while one runs.

        Parameters
        ----------
        batches : iterable of (ids, ndarray)
            ``ids`` (a list; empty batches are skipped) and their prepared images, uint8 ``[B, S, S, 3]``.
        view : {"center", "flip"}
            The crop of :func:`~artextract.models.base.images_to_tensor`.
        size : int, optional
            The input size (default: the backbone's).
        maps_dtype : numpy dtype
            The dtype the maps are returned in (feature stores keep float16).

        Yields
        ------
        (ids, maps, pooled, stats)
            numpy arrays for a part of one batch, as parts finish (with OpenVINO, not necessarily in order).
        """
        size = size or self.size
        if self.engine == "torch" and self.device.type == "cuda":
            yield from self._stream_device(batches, view, size, np.dtype(maps_dtype))
            return
        if self.engine != "openvino":
            for ids, u8 in batches:
                if len(ids):
                    fm, pv, sv = self(images_to_tensor(u8, size, view, self.backbone.preprocess))
                    yield ids, fm.numpy().astype(maps_dtype), pv.numpy(), sv.numpy()
            return
        yield from self._stream_openvino(batches, view, size, np.dtype(maps_dtype))

    # ------------------------------------------------------------------ torch
    def _precise(self):
        """fp32 on a GPU means fp32: cuDNN's TF32 convolutions (on by default) are turned off for the pass."""
        import contextlib
        if self.device.type != "cuda" or self.precision != "fp32":
            return contextlib.nullcontext()
        return torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False, allow_tf32=False)

    @torch.no_grad()
    def _torch(self, x: torch.Tensor):
        # on a GPU, channels_last; on a CPU the module stays contiguous and the input keeps the NHWC layout
        # of the prepared images (faster here than channels_last weights: 134 against 106 views/s, MobileNetV2)
        x = x.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        with self._precise(), torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            fm, pv, sv = self.backbone.forward_all(x)
        return fm.float().cpu(), pv.float().cpu(), sv.float().cpu()

    @torch.no_grad()
    def _stream_device(self, batches: Iterable, view: str, size: int, maps_dtype: np.dtype) -> Iterator[tuple]:
        """The torch engine on a GPU (it runs on any device; the CPU keeps the plain loop): the prepared uint8 images go to the device as they are (a quarter of the bytes of
        floats, from pinned memory), the crop, mirror image and normalisation run there (the graph of
        :class:`_FromPrepared`), and the outputs come back in ``maps_dtype`` while the next batch is already
        queued on the device, so that reading, copying and computing overlap."""
        import collections

        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        out_dtype = torch.float16 if maps_dtype == np.float16 else torch.float32
        cuda = self.device.type == "cuda"
        pending: collections.deque = collections.deque()
        graphs: dict = {}

        def finish():
            ids, outs, ready = pending.popleft()
            if ready is not None:
                ready.synchronize()
            fm, pv, sv = (o.numpy() for o in outs)
            return ids, (fm if fm.dtype == maps_dtype else fm.astype(maps_dtype)), pv, sv

        for ids, u8 in batches:
            if not len(ids):
                continue
            s = u8.shape[1]
            if crop_box(s)[1] != size:  # the crop needs resizing: preprocess on the host, as __call__ does
                x = images_to_tensor(u8, size, view, self.backbone.preprocess)
                graph = self.backbone.forward_all
            else:
                x = torch.from_numpy(np.ascontiguousarray(u8))
                if (s, view) not in graphs:
                    graphs[(s, view)] = _FromPrepared(self.backbone, s, view).to(self.device).eval()
                graph = graphs[(s, view)]
            x = (x.pin_memory() if cuda else x).to(self.device, non_blocking=True)
            with self._precise(), torch.autocast(self.device.type, dtype=dtype or torch.float32,
                                                 enabled=dtype is not None):
                fm, pv, sv = graph(x)
            outs = [t.to(d).to("cpu", non_blocking=cuda)
                    for t, d in ((fm, out_dtype), (pv, torch.float32), (sv, torch.float32))]
            ready = torch.cuda.Event() if cuda else None
            if ready is not None:
                ready.record()
            pending.append((list(ids), outs, ready))
            if len(pending) > 1:  # the batch before this one, while this one runs
                yield finish()
        while pending:
            yield finish()

    # ------------------------------------------------------------------ openvino
    def _openvino(self, x: torch.Tensor):
        """The batch cut into requests of :data:`PART` images, run asynchronously over the compiled model's
        streams (one per thread): each stream goes at its own pace, so work that shares the cores (decoding
        in worker processes) slows one stream instead of stalling every thread at each layer's barrier."""
        import openvino as ov

        arr = np.ascontiguousarray(x.detach().float().cpu().numpy())
        kind = ("f32", arr.shape[-1])
        with self._lock:
            if kind not in self._queues:
                compiled = self._graph(kind)
                self._queues[kind] = ov.AsyncInferQueue(compiled, IN_FLIGHT * _streams(compiled))
            queue = self._queues[kind]
            bounds = _parts(len(arr))
            parts: list = [None] * len(bounds)

            def done(request, i):
                parts[i] = _outputs(request, np.float32)

            queue.set_callback(done)
            for i, (a, b) in enumerate(bounds):
                queue.start_async(arr[a:b], i)  # waits for a free request
            queue.wait_all()
        fm, pv, sv = (torch.from_numpy(np.concatenate([p[k] for p in parts])) for k in range(3))
        return fm, pv, sv

    def _stream_openvino(self, batches: Iterable, view: str, size: int, maps_dtype: np.dtype) -> Iterator[tuple]:
        """Each batch is cut into requests of :data:`PART` images; :data:`IN_FLIGHT` requests per stream are
        queued, so the next ones wait in the engine while this thread reads, converts and stores. The
        preprocessing is in the graph when the crop needs no resizing (else it runs here, as for
        :meth:`__call__`)."""
        import collections

        import openvino as ov

        queue = None
        done: collections.deque = collections.deque()
        errors: list = []

        def finished(request, ids):
            try:
                done.append((ids, *_outputs(request, maps_dtype)))
            except BaseException as exc:  # re-raised in the caller's thread
                errors.append(exc)

        try:
            for ids, u8 in batches:
                if not len(ids):
                    continue
                if queue is None:
                    s = u8.shape[1]
                    in_graph = crop_box(s)[1] == size
                    with self._lock:
                        compiled = self._graph(("u8", s, view) if in_graph else ("f32", size))
                    queue = ov.AsyncInferQueue(compiled, IN_FLIGHT * _streams(compiled))
                    queue.set_callback(finished)
                arr = (np.ascontiguousarray(u8) if in_graph else
                       images_to_tensor(u8, size, view, self.backbone.preprocess).numpy())
                for a, b in _parts(len(ids)):
                    queue.start_async(arr[a:b], list(ids[a:b]))  # waits for a free request
                    while done:
                        yield done.popleft()
                if errors:
                    raise errors[0]
        finally:
            if queue is not None:
                queue.wait_all()
        if errors:
            raise errors[0]
        while done:
            yield done.popleft()

    def _graph(self, kind: tuple):
        """The compiled model of one graph kind: ``("f32", size)`` (normalised images) or
        ``("u8", cache_size, view)`` (prepared images, preprocessing inside). Call under the lock."""
        if kind not in self._graphs:
            self._graphs[kind] = self._compile(kind)
        return self._graphs[kind]

    def _compile(self, kind: tuple):
        import openvino as ov
        root = engine_cache_dir()
        key = f"{self.backbone.name}|{kind}|{weights_hash(self.backbone)}|{ov.__version__}|{ENGINE_FORMAT}"
        tag = self.backbone.name.replace(":", "_").replace("/", "_").replace("@", "_")
        label = "-".join(str(k) for k in kind[1:]) + ("-u8" if kind[0] == "u8" else "")
        folder = root / f"{tag}-{label}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"
        memo = (str(folder), self.precision, self.threads)
        if memo in _COMPILED and (folder / "model.xml").is_file():  # compiled earlier in this process
            return _COMPILED[memo]
        core = ov.Core()
        xml = folder / "model.xml"
        if xml.is_file():
            model = core.read_model(str(xml))
            logger.debug("openvino: reusing the converted %s from %s", self.backbone.name, folder)
        else:
            logger.info("converting %s (%s) for OpenVINO (once; kept in %s)", self.backbone.name, label, folder)
            model = self._convert(kind)
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

    def _convert(self, kind: tuple):
        import warnings

        import openvino as ov
        net = self.backbone.float().cpu()
        if kind[0] == "u8":
            s = kind[1]
            module, example = _FromPrepared(net, s, kind[2]), torch.zeros(1, s, s, 3, dtype=torch.uint8)
            shape = ov.PartialShape([-1, s, s, 3])
        else:
            s = kind[1]
            module, example, shape = _AllOutputs(net), torch.zeros(1, 3, s, s), ov.PartialShape([-1, 3, s, s])
        with warnings.catch_warnings():  # the tracer's notes on shape arithmetic, fixed for one input size
            warnings.simplefilter("ignore")
            return ov.convert_model(module, example_input=example, input=[shape])


def _outputs(request, maps_dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A finished request's map (in ``maps_dtype``), pooled vector and statistics, copied out (the
    request's tensors are reused by its next inference)."""
    fm = request.get_output_tensor(0).data.astype(maps_dtype)  # astype copies
    pv, sv = (np.array(request.get_output_tensor(k).data, np.float32, copy=True) for k in (1, 2))
    return fm, pv, sv


def _streams(compiled) -> int:
    return max(1, int(compiled.get_property("NUM_STREAMS")))


def _parts(n: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each request's images: a few images per request keep a layer's activations in
    the core's caches (MobileNetV2 on 2 cores: see docs/benchmarks.md)."""
    return [(a, min(a + PART, n)) for a in range(0, n, PART)]
