"""The reference to beat: our three architectures with recurrent cells written the
straightforward way the seed's published code writes them -- one ``nn.Conv2d`` per gate and per
input (``w_xi``, ``w_hi``, ``w_ci``, ...), float32, no fusion, no compilation.

Only the cells differ from ours: :func:`reference_model` builds our architecture for a
:class:`~hpo_vidpred.specs.ModelSpec` and swaps every fused cell for its one-convolution-per-term
twin below. The computation is therefore the same as ours (every layer runs over the whole
sequence; the seed's autoencoder, whose later layers see only the last hidden state, is not
reproduced), the parameter counts are the same, and with :func:`copy_weights` the outputs agree
to float32 rounding. Architecture-level code (loops, padding, flow warp) is shared with ours,
so a speedup measured against this reference comes from what we changed and nothing else.

Written from the slide equations (ConvLSTM: eqs. 6-11; ST-LSTM: eqs. 35-44), not from the
seed's code.

    python -c "import reference"  # from benchmarks/: the module only defines the models
"""

from __future__ import annotations

import torch
from torch import nn

from hpo_vidpred.archs import create_model
from hpo_vidpred.cells import STLSTM, Cell, ConvLSTM, State
from hpo_vidpred.registry import Registry
from hpo_vidpred.specs import ModelSpec

__all__ = ["REFERENCE_CELLS", "RefConvLSTM", "RefSTLSTM", "copy_weights", "reference_model"]

REFERENCE_CELLS: Registry[type[Cell]] = Registry("reference cell")


def _conv(c_in: int, c_out: int, kernel: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=bias)


@REFERENCE_CELLS.register("convlstm")
class RefConvLSTM(Cell):
    """ConvLSTM (Shi et al. 2015), eight convolutions (plus three peephole ones), state (h, c).

    ``peephole``: none | conv (``w_ci``, ``w_cf``, ``w_co`` convolutions of the cell state, the
    seed's) | hadamard (per-channel elementwise weights, Shi et al.)."""

    state_names = ("h", "c")

    def __init__(self, in_channels: int, hidden: int, kernel: int = 3, peephole: str = "none"):
        super().__init__(in_channels, hidden, kernel)
        self.peephole_mode = peephole
        for gate in "ifgo":  # input terms without bias, hidden terms with the gate's bias
            setattr(self, f"w_x{gate}", _conv(in_channels, hidden, kernel, bias=False))
            setattr(self, f"w_h{gate}", _conv(hidden, hidden, kernel, bias=True))
        if peephole == "conv":
            for gate in "ifo":
                setattr(self, f"w_c{gate}", _conv(hidden, hidden, kernel, bias=False))
        elif peephole == "hadamard":
            for gate in "ifo":
                setattr(self, f"w_c{gate}", nn.Parameter(torch.zeros(hidden, 1, 1)))

    def _peep(self, gate: str, c: torch.Tensor) -> torch.Tensor | float:
        if self.peephole_mode == "conv":
            return getattr(self, f"w_c{gate}")(c)
        if self.peephole_mode == "hadamard":
            return getattr(self, f"w_c{gate}") * c
        return 0.0

    def step(self, x: torch.Tensor, state: State) -> dict[str, torch.Tensor]:
        h_prev, c_prev = state
        i = torch.sigmoid(self.w_xi(x) + self.w_hi(h_prev) + self._peep("i", c_prev))  # eq. 6
        f = torch.sigmoid(self.w_xf(x) + self.w_hf(h_prev) + self._peep("f", c_prev))  # eq. 7
        g = torch.tanh(self.w_xg(x) + self.w_hg(h_prev))  # eq. 8
        c = g * i + c_prev * f  # eq. 9
        o = torch.sigmoid(self.w_xo(x) + self.w_ho(h_prev) + self._peep("o", c))  # eq. 10
        h = o * torch.tanh(c)  # eq. 11
        return {"i": i, "f": f, "g": g, "o": o, "c": c, "h": h}


@REFERENCE_CELLS.register("stlstm")
class RefSTLSTM(Cell):
    """ST-LSTM of PredRNN (Wang et al. 2017): seven input convolutions, four on h, three on M,
    ``w_co`` and ``w_mo`` on the new C and M, the 1x1 convolution over [C, M]; state (h, c, m).
    ``peephole`` is accepted and ignored, as by ours."""

    state_names = ("h", "c", "m")

    def __init__(self, in_channels: int, hidden: int, kernel: int = 3, peephole: str = "none"):
        super().__init__(in_channels, hidden, kernel)
        for term in ("i", "f", "g", "i2", "f2", "g2", "o"):
            setattr(self, f"w_x{term}", _conv(in_channels, hidden, kernel, bias=False))
        for gate in "ifgo":
            setattr(self, f"w_h{gate}", _conv(hidden, hidden, kernel, bias=True))
        for gate in "ifg":
            setattr(self, f"w_m{gate}", _conv(hidden, hidden, kernel, bias=True))
        self.w_co = _conv(hidden, hidden, kernel, bias=False)
        self.w_mo = _conv(hidden, hidden, kernel, bias=False)
        self.w_1x1 = _conv(2 * hidden, hidden, 1, bias=False)

    def step(self, x: torch.Tensor, state: State) -> dict[str, torch.Tensor]:
        h_prev, c_prev, m_prev = state
        g = torch.tanh(self.w_xg(x) + self.w_hg(h_prev))  # eq. 35
        i = torch.sigmoid(self.w_xi(x) + self.w_hi(h_prev))  # eq. 36
        f = torch.sigmoid(self.w_xf(x) + self.w_hf(h_prev))  # eq. 37
        c = f * c_prev + i * g  # eq. 38
        g2 = torch.tanh(self.w_xg2(x) + self.w_mg(m_prev))  # eq. 39
        i2 = torch.sigmoid(self.w_xi2(x) + self.w_mi(m_prev))  # eq. 40
        f2 = torch.sigmoid(self.w_xf2(x) + self.w_mf(m_prev))  # eq. 41
        m = f2 * m_prev + i2 * g2  # eq. 42
        o = torch.sigmoid(self.w_xo(x) + self.w_ho(h_prev) + self.w_co(c) + self.w_mo(m))  # 43
        h = o * torch.tanh(self.w_1x1(torch.cat((c, m), dim=1)))  # eq. 44, (B, 2*hid, H, W) in
        return {"g": g, "i": i, "f": f, "c": c, "g'": g2, "i'": i2, "f'": f2, "m": m, "o": o,
                "h": h}

    # Handing M between layers has no convolution in it: the same code as ours.
    memory = STLSTM.memory
    with_memory = STLSTM.with_memory


def reference_model(spec: ModelSpec) -> nn.Module:
    """Our architecture for ``spec`` with every recurrent cell replaced by its reference twin
    (same parameter count, same computation, one convolution per gate and input)."""
    model = create_model(spec)
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, Cell):
                twin = REFERENCE_CELLS.get(spec.cell)(
                    child.in_channels, child.hidden, child.kernel, peephole=spec.peephole
                )
                setattr(module, name, twin)
    return model


@torch.no_grad()
def copy_weights(ours: nn.Module, reference: nn.Module) -> None:
    """Load ``ours`` (fused cells) into ``reference`` (built by :func:`reference_model` from the
    same spec): cell weights are split per gate, everything else is copied by name."""
    cells = {name: m for name, m in ours.named_modules() if isinstance(m, Cell)}
    ref_modules = dict(reference.named_modules())

    def in_cell(key: str) -> bool:
        return any(key.startswith(f"{name}.") for name in cells)

    rest = {k: v for k, v in ours.state_dict().items() if not in_cell(k)}
    result = reference.load_state_dict(rest, strict=False)
    unloaded = [k for k in result.missing_keys if not in_cell(k)] + result.unexpected_keys
    if unloaded:
        raise ValueError(f"parameters without a counterpart: {unloaded[:5]}")
    for name, fused in cells.items():
        _SPLIT[type(fused)](fused, ref_modules[name])


def _rows(weight: torch.Tensor, k: int, hid: int) -> torch.Tensor:
    return weight[k * hid:(k + 1) * hid]  # the k-th gate's output channels of a fused conv


def _split_convlstm(fused: ConvLSTM, ref: RefConvLSTM) -> None:
    hid = fused.hidden
    for k, gate in enumerate("ifgo"):  # fused gate order i, f, g, o
        getattr(ref, f"w_x{gate}").weight.copy_(_rows(fused.conv_x.weight, k, hid))
        getattr(ref, f"w_h{gate}").weight.copy_(_rows(fused.conv_h.weight, k, hid))
        getattr(ref, f"w_h{gate}").bias.copy_(_rows(fused.conv_h.bias, k, hid))
    if fused.peephole_mode == "conv":
        ref.w_ci.weight.copy_(_rows(fused.peephole.conv_if.weight, 0, hid))
        ref.w_cf.weight.copy_(_rows(fused.peephole.conv_if.weight, 1, hid))
        ref.w_co.weight.copy_(fused.peephole.conv_o.weight)
    elif fused.peephole_mode == "hadamard":
        ref.w_ci.copy_(fused.peephole.w_if[0])
        ref.w_cf.copy_(fused.peephole.w_if[1])
        ref.w_co.copy_(fused.peephole.w_o)


def _split_stlstm(fused: STLSTM, ref: RefSTLSTM) -> None:
    hid = fused.hidden
    for k, term in enumerate(("i", "f", "g", "i2", "f2", "g2", "o")):  # conv_x order
        getattr(ref, f"w_x{term}").weight.copy_(_rows(fused.conv_x.weight, k, hid))
    for conv, prefix, gates in ((fused.conv_h, "w_h", "ifgo"), (fused.conv_m, "w_m", "ifg")):
        for k, gate in enumerate(gates):
            getattr(ref, f"{prefix}{gate}").weight.copy_(_rows(conv.weight, k, hid))
            getattr(ref, f"{prefix}{gate}").bias.copy_(_rows(conv.bias, k, hid))
    ref.w_co.weight.copy_(fused.conv_o.weight[:, :hid])  # conv_o reads [C_t, M_t]
    ref.w_mo.weight.copy_(fused.conv_o.weight[:, hid:])
    ref.w_1x1.weight.copy_(fused.conv_1x1.weight)


_SPLIT = {ConvLSTM: _split_convlstm, STLSTM: _split_stlstm}
