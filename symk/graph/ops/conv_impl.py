"""Numpy implementations of the N-d convolution family (1 to 3 spatial dims, channels last):
the forward convolution, its gradient w.r.t. the input (the transposed convolution) and its
gradient w.r.t. the kernel, plus the padding and output-size arithmetic they share.

Layouts: input ``(N, *S, C)``, kernel ``(*K, C // groups, F)``, output ``(N, *O, F)``; output
channel ``f`` of group ``f // (F // groups)`` reads input channels of that group.  Kernels are
cross-correlations (not flipped), like TensorFlow.  A pad entry is ``(lo, hi)`` or ``None`` for
TensorFlow's "same" padding resolved from the input size at run time.

Speed: the input windows are one strided view ``(N, *O, *K, C)`` of the padded input (no copy);
blocks of it of about ``BLOCK_ELEMENTS`` elements are copied into a cache-resident im2col buffer
and multiplied with the kernel matrix by one BLAS GEMM each, written straight into the output.
The input gradient of a stride-1 convolution with few channels and taps is one GEMM
``g @ W_t^T`` and one strided add per kernel tap ``t``, per L2-sized block; with more, the
forward convolution of ``g`` with the flipped kernel; with strides, one GEMM ``g @ W^T`` per
block and one strided add per tap (col2im).  Depthwise convolutions (one input channel per
group) use one fused multiply-add per kernel tap instead of GEMMs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from symk.errors import ShapeError

Pad = tuple[int, int] | None
#: im2col block size in elements (about 4 MB of float32: stays in the L2/L3 cache)
BLOCK_ELEMENTS = 1 << 20
#: rows per block of the per-tap input gradient, in elements of (output-gradient row +
#: input-gradient row): about 200 KB of float32, within a core's L2 with the gradient
TAP_BLOCK_ELEMENTS = 48 << 10
#: rows per block of the scatter input gradient, in elements of its GEMM's output (about
#: 512 KB of float32: 12.2 ms with it, 13.8 ms with BLOCK_ELEMENTS, 40x40x40 <- 3x3x160)
SCATTER_BLOCK_ELEMENTS = 1 << 17
#: the per-tap input gradient is used up to this many (input x output) channels and taps
TAP_MAX_CHANNELS, TAP_MAX_TAPS = 2048, 9


def same_pads(n: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's SAME padding of one dim: output ceil(n / s), the extra pixel at the end."""
    out = -(-n // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def resolve_pads(spatial: Sequence[int], ksize: Sequence[int], strides: Sequence[int],
                 dilation: Sequence[int], pads: Sequence[Pad]) -> list[tuple[int, int]]:
    return [same_pads(n, k, s, d) if p is None else (int(p[0]), int(p[1]))
            for n, k, s, d, p in zip(spatial, ksize, strides, dilation, pads)]


def out_size(n: int | None, k: int, s: int, d: int, pad: Pad) -> int | None:
    """Output length of one spatial dim (None when the input length is unknown)."""
    if n is None:
        return None
    if pad is None:
        return -(-n // s)
    return (n + pad[0] + pad[1] - d * (k - 1) - 1) // s + 1


def _check_out(spatial: Sequence[int], out: Sequence[int], ksize: Sequence[int]) -> None:
    if any(o <= 0 for o in out):
        raise ShapeError(f"convolution of spatial size {tuple(spatial)} with a kernel of size "
                         f"{tuple(ksize)} (dilated) has an empty output {tuple(out)}")


def _windows(xp: np.ndarray, out: Sequence[int], ksize: Sequence[int], strides: Sequence[int],
             dilation: Sequence[int], writeable: bool = False) -> np.ndarray:
    """The view ``(N, *O, *K, C)`` of the padded input ``xp``: window (o, t) reads
    ``xp[n, o * s + t * d, c]``."""
    st = xp.strides
    nsp = len(ksize)
    shape = (xp.shape[0], *out, *ksize, xp.shape[-1])
    strides_ = (st[0], *(st[1 + i] * strides[i] for i in range(nsp)),
                *(st[1 + i] * dilation[i] for i in range(nsp)), st[-1])
    return as_strided(xp, shape, strides_, writeable=writeable)


def _blocks(n: int, out: Sequence[int], row_elems: int, limit: int = BLOCK_ELEMENTS,
            ) -> Iterator[tuple[slice, slice]]:
    """(batch slice, first-output-dim slice) blocks of about ``limit`` elements of rows of
    ``row_elems``; each selects a contiguous part of a C-ordered ``(N, *O, F)`` array."""
    o0 = out[0]
    per_row = row_elems * math.prod(out[1:])
    per_img = per_row * o0
    if per_img <= limit:
        nb = max(1, limit // max(per_img, 1))
        for i in range(0, n, nb):
            yield slice(i, min(i + nb, n)), slice(0, o0)
    else:
        rows = max(1, limit // max(per_row, 1))
        for i in range(n):
            for a in range(0, o0, rows):
                yield slice(i, i + 1), slice(a, min(a + rows, o0))


def _pad_input(x: np.ndarray, pads: Sequence[tuple[int, int]]) -> np.ndarray:
    if not any(lo or hi for lo, hi in pads):
        return x
    return np.pad(x, [(0, 0), *pads, (0, 0)])


def geometry(spatial: Sequence[int], ksize: Sequence[int], strides: Sequence[int],
              dilation: Sequence[int], pads: Sequence[Pad]):
    if any(k is not None and k <= 0 for k in ksize):
        raise ShapeError(f"convolution kernel of spatial size {tuple(ksize)}: every kernel "
                         "dimension must be at least 1")
    pads_ = resolve_pads(spatial, ksize, strides, dilation, pads)
    out = [out_size(n, k, s, d, p) for n, k, s, d, p in zip(spatial, ksize, strides, dilation,
                                                            pads_)]
    _check_out(spatial, out, ksize)
    return pads_, out


def _taps(ksize: Sequence[int]) -> Iterator[tuple[int, ...]]:
    return iter(np.ndindex(*ksize))


def conv_forward(x: np.ndarray, w: np.ndarray, strides: Sequence[int],
                 dilation: Sequence[int], pads: Sequence[Pad], groups: int,
                 out: np.ndarray | None = None) -> np.ndarray:
    """y[n, o, f] = sum_{t, c} x_padded[n, o * s + t * d, g(f) * Cg + c] * w[t, c, f]
    (written into the C-contiguous ``out`` when given)."""
    nsp = w.ndim - 2
    ksize, cg, f = w.shape[:nsp], w.shape[-2], w.shape[-1]
    dtype = np.result_type(x.dtype, w.dtype)
    x, w = x.astype(dtype, copy=False), w.astype(dtype, copy=False)
    y_arr = out
    pads_, out = geometry(x.shape[1:-1], ksize, strides, dilation, pads)
    n = x.shape[0]
    y = np.empty((n, *out, f), dtype) if y_arr is None else y_arr
    if y.size == 0:
        return y
    if cg == 0 or 0 in ksize:  # an empty sum over channels or taps
        y[...] = 0
        return y
    if groups == 1 and all(k == 1 for k in ksize) and all(s == 1 for s in strides) \
            and not any(lo or hi for lo, hi in pads_):
        np.matmul(np.ascontiguousarray(x).reshape(-1, cg), w.reshape(cg, f),
                  out=y.reshape(-1, f))
        return y
    win = _windows(_pad_input(x, pads_), out, ksize, strides, dilation)
    if groups > 1 and cg == 1:
        return _depthwise_forward(win, w, y, ksize, groups)
    m = f // groups
    kc = math.prod(ksize) * cg
    buf = np.empty(min(BLOCK_ELEMENTS + kc * math.prod(out[1:]), n * math.prod(out) * kc),
                   dtype)
    for g in range(groups):
        wmat = np.ascontiguousarray(w[..., g * m:(g + 1) * m]).reshape(kc, m)
        wing = win[..., g * cg:(g + 1) * cg] if groups > 1 else win
        for bn, ba in _blocks(n, out, kc):
            part = wing[bn, ba]
            rows = part.size // kc
            col = buf[:part.size].reshape(part.shape)
            np.copyto(col, part)
            if groups == 1:
                np.matmul(col.reshape(rows, kc), wmat, out=y[bn, ba].reshape(rows, f))
            else:
                y[bn, ba][..., g * m:(g + 1) * m] = (col.reshape(rows, kc) @ wmat).reshape(
                    part.shape[:1 + nsp] + (m,))
    return y


def _depthwise_forward(win: np.ndarray, w: np.ndarray, y: np.ndarray, ksize: Sequence[int],
                       groups: int) -> np.ndarray:
    """One multiply-add per tap: y[..., c, m] += x_tap[..., c] * w[t, 0, c * M + m]."""
    m = w.shape[-1] // groups
    y5 = y.reshape(y.shape[:-1] + (groups, m))
    nsp = len(ksize)
    lead = (slice(None),) * (1 + nsp)
    for k, t in enumerate(_taps(ksize)):
        xt = win[lead + t][..., None]
        wt = w[t][0].reshape(groups, m)
        if k == 0:
            np.multiply(xt, wt, out=y5)
        else:
            y5 += xt * wt
    return y


def input_grad_algos(ksize: Sequence[int], cg: int, f: int, strides: Sequence[int],
                     dilation: Sequence[int], pads: Sequence[tuple[int, int]],
                     groups: int) -> list[str]:
    """The ways :func:`conv_input_grad` can compute this geometry (resolved ``pads``), the
    default first: "taps" (one GEMM ``g @ W_t^T`` and one strided add per kernel tap, per
    L2-sized block), "flipped" (stride 1: the forward convolution of ``g`` with the flipped
    kernel), "scatter" (one GEMM ``g @ W^T`` per block, then one strided add per tap), or
    "depthwise" (one input channel per group)."""
    if groups > 1 and cg == 1:
        return ["depthwise"]
    if groups > 1:
        return ["scatter"]
    reach = [d * (k - 1) for k, d in zip(ksize, dilation)]
    flip = all(s == 1 for s in strides) and all(
        lo <= r and hi <= r for (lo, hi), r in zip(pads, reach))
    # measured defaults: per-tap GEMMs win for few channels and taps (13x13x32 <- 11x11x64,
    # 3x3: 0.97 against 1.39 ms flipped), the flipped convolution for more (16x16x128)
    few = cg * f <= TAP_MAX_CHANNELS and math.prod(ksize) <= TAP_MAX_TAPS
    algos = (["taps"] if few and all(s == 1 for s in strides) else []) + \
        (["flipped"] if flip else []) + ["scatter"]
    return algos + (["taps"] if "taps" not in algos else [])


def conv_input_grad(g: np.ndarray, w: np.ndarray, in_spatial: Sequence[int],
                    strides: Sequence[int], dilation: Sequence[int], pads: Sequence[Pad],
                    groups: int, out: np.ndarray | None = None,
                    algo: str | None = None) -> np.ndarray:
    """The gradient of ``conv_forward`` w.r.t. its input of spatial size ``in_spatial``: the
    transposed convolution of ``g`` (written into ``out`` when given), computed the way
    ``algo`` names (one of :func:`input_grad_algos`; default its first)."""
    nsp = w.ndim - 2
    ksize, cg, f = w.shape[:nsp], w.shape[-2], w.shape[-1]
    dtype = np.result_type(g.dtype, w.dtype)
    g, w = g.astype(dtype, copy=False), w.astype(dtype, copy=False)
    dst = out
    pads_, out = geometry(in_spatial, ksize, strides, dilation, pads)
    if tuple(g.shape[1:-1]) != tuple(out):
        raise ShapeError(f"transposed convolution: the input's spatial shape "
                         f"{tuple(g.shape[1:-1])} does not match the convolution output "
                         f"{tuple(out)} of the requested output size {tuple(in_spatial)}")
    n, c = g.shape[0], cg * groups
    algos = input_grad_algos(ksize, cg, f, strides, dilation, pads_, groups)
    if algo is None:
        algo = algos[0]
    elif algo not in algos:
        raise ValueError(f"conv_input_grad: {algo!r} cannot compute this geometry "
                         f"(possible: {algos})")
    if algo == "flipped":
        reach = [d * (k - 1) for k, d in zip(ksize, dilation)]
        wf = np.ascontiguousarray(np.swapaxes(w[(slice(None, None, -1),) * nsp], -1, -2))
        return conv_forward(g, wf, strides, dilation,
                            [(r - lo, r - hi) for (lo, hi), r in zip(pads_, reach)], 1, dst)
    padded = [s + lo + hi for s, (lo, hi) in zip(in_spatial, pads_)]
    dxp = np.zeros((n, *padded, c), dtype)
    if dxp.size and g.size:
        win = _windows(dxp, out, ksize, strides, dilation, writeable=True)
        lead = (slice(None),) * (1 + nsp)
        if algo == "depthwise":
            m = f // groups
            g5 = g.reshape(g.shape[:-1] + (groups, m))
            for t in _taps(ksize):
                wt = w[t][0].reshape(groups, m)
                win[lead + t] += g5[..., 0] * wt[:, 0] if m == 1 else (g5 * wt).sum(-1)
        elif algo == "taps":
            _col2im_taps(g, w, win, out, ksize)
        else:
            _col2im(g, w, win, out, ksize, groups)
    crop = (slice(None),) + tuple(slice(lo, lo + s) for s, (lo, _) in zip(in_spatial, pads_))
    dx = dxp[crop]
    if dst is not None:
        np.copyto(dst, dx)
        return dst
    return dx if dx.shape == dxp.shape else np.ascontiguousarray(dx)


def _col2im_taps(g: np.ndarray, w: np.ndarray, win: np.ndarray, out: Sequence[int],
                 ksize: Sequence[int]) -> None:
    """``win[n, o, t, :] += g[n, o, :] @ w[t].T`` (one ungrouped transposed convolution), one
    GEMM and one strided add per kernel tap on blocks small enough that ``g``'s rows, the
    product and the gradient they add into stay in the core's L2 cache."""
    nsp = len(ksize)
    cg, f = w.shape[-2], w.shape[-1]
    wt = np.ascontiguousarray(np.swapaxes(w, -1, -2))  # (*K, F, C)
    lead = (slice(None),) * (1 + nsp)
    buf = np.empty(0, g.dtype)
    for bn, ba in _blocks(g.shape[0], out, f + cg, TAP_BLOCK_ELEMENTS):
        gb_ = g[bn, ba]
        rows = gb_.size // f
        if buf.size < rows * cg:
            buf = np.empty(rows * cg, g.dtype)
        prod = buf[:rows * cg].reshape(rows, cg)
        gm = np.ascontiguousarray(gb_).reshape(rows, f)
        dst = win[bn, ba]
        for t in _taps(ksize):
            np.matmul(gm, wt[t], out=prod)
            dst[lead + t] += prod.reshape(gb_.shape[:-1] + (cg,))


def _col2im(g: np.ndarray, w: np.ndarray, win: np.ndarray, out: Sequence[int],
            ksize: Sequence[int], groups: int) -> None:
    nsp = len(ksize)
    cg, f = w.shape[-2], w.shape[-1]
    m = f // groups
    kc = math.prod(ksize) * cg
    lead = (slice(None),) * (1 + nsp)
    for gi in range(groups):
        wt = np.ascontiguousarray(w[..., gi * m:(gi + 1) * m]).reshape(kc, m).T
        gg = g[..., gi * m:(gi + 1) * m] if groups > 1 else g
        wing = win[..., gi * cg:(gi + 1) * cg] if groups > 1 else win
        for bn, ba in _blocks(g.shape[0], out, kc, SCATTER_BLOCK_ELEMENTS):
            gb_ = gg[bn, ba]
            rows = gb_.size // m
            col = (np.ascontiguousarray(gb_).reshape(rows, m) @ wt).reshape(
                gb_.shape[:1 + nsp] + tuple(ksize) + (cg,))
            dst = wing[bn, ba]
            for t in _taps(ksize):
                dst[lead + t] += col[lead + t]


def conv_kernel_grad(x: np.ndarray, g: np.ndarray, ksize: Sequence[int],
                     strides: Sequence[int], dilation: Sequence[int], pads: Sequence[Pad],
                     groups: int) -> np.ndarray:
    """The gradient of ``conv_forward`` w.r.t. its kernel of spatial size ``ksize``."""
    nsp = len(ksize)
    dtype = np.result_type(x.dtype, g.dtype)
    x, g = x.astype(dtype, copy=False), g.astype(dtype, copy=False)
    c, f = x.shape[-1], g.shape[-1]
    cg, m = c // groups, f // groups
    pads_, out = geometry(x.shape[1:-1], ksize, strides, dilation, pads)
    if tuple(g.shape[1:-1]) != tuple(out):
        raise ShapeError(f"kernel gradient: output gradient of spatial shape "
                         f"{tuple(g.shape[1:-1])}, expected {tuple(out)}")
    dw = np.zeros((*ksize, cg, f), dtype)
    if x.size == 0 or g.size == 0:
        return dw
    win = _windows(_pad_input(x, pads_), out, ksize, strides, dilation)
    lead = (slice(None),) * (1 + nsp)
    if groups > 1 and cg == 1:
        g5 = g.reshape(g.shape[:-1] + (groups, m))
        lt = "abcd"[:1 + nsp]
        spec = f"{lt}y,{lt}yz->yz"
        for t in _taps(ksize):
            dw[t][0] = np.einsum(spec, win[lead + t], g5).reshape(f)
        return dw
    kc = math.prod(ksize) * cg
    buf = np.empty(min(BLOCK_ELEMENTS + kc * math.prod(out[1:]), x.shape[0] * math.prod(out)
                       * kc), dtype)
    for gi in range(groups):
        acc = np.zeros((kc, m), dtype)
        wing = win[..., gi * cg:(gi + 1) * cg] if groups > 1 else win
        gg = g[..., gi * m:(gi + 1) * m] if groups > 1 else g
        for bn, ba in _blocks(x.shape[0], out, kc):
            part = wing[bn, ba]
            rows = part.size // kc
            col = buf[:part.size].reshape(part.shape)
            np.copyto(col, part)
            gblk = gg[bn, ba]
            acc += col.reshape(rows, kc).T @ np.ascontiguousarray(gblk).reshape(rows, m)
        dw[..., gi * m:(gi + 1) * m] = acc.reshape(*ksize, cg, m)
    return dw
