"""HoRA in PyTorch (no peft class exists), as crates/finetune/src/adapters/hora.rs computes it:
per layer a shared A-seed (r x in), per-head B-seeds (H x d_h x r), and for query and value a
map G_A (r x r) on the rank axis and a map G_B (d_h x d_h) on every head's output axis;

    A = phi(G_A @ A_seed),  B[h] = phi(G_B @ B_seed[h]),  W x + (alpha / r) * B A dropout(x)

with phi = tanh (or the identity). Used by step_time.py (the timing side-by-side) and by
peft_round_trip.py trajectory (the same training, step by step, against the Rust run).
"""
import torch

TARGETS = ("query", "value")


class HoraLayer(torch.nn.Module):
    """One layer's generator. Initialised as the Rust side does (A-seed uniform +-1/sqrt(in),
    B-seeds 0, maps the identity), or from a native folder's tensors with `load`."""

    def __init__(self, hidden, heads, rank, activation="tanh"):
        super().__init__()
        dh = hidden // heads
        bound = 1.0 / hidden ** 0.5
        self.rank, self.activation = rank, activation
        self.a_seed = torch.nn.Parameter(torch.empty(rank, hidden).uniform_(-bound, bound))
        self.b_seed = torch.nn.Parameter(torch.zeros(heads, dh, rank))
        self.g_a = torch.nn.ParameterList([torch.nn.Parameter(torch.eye(rank)) for _ in TARGETS])
        self.g_b = torch.nn.ParameterList([torch.nn.Parameter(torch.eye(dh)) for _ in TARGETS])

    def phi(self, x):
        return torch.tanh(x) if self.activation == "tanh" else x

    def factors(self, target):
        a = self.phi(self.g_a[target] @ self.a_seed)
        b = self.phi(torch.matmul(self.g_b[target], self.b_seed)).reshape(-1, self.rank)
        return a, b

    def named_native(self, prefix):
        """Parameters under the native folder's keys (`<prefix>.a_seed`, `g_a_query`, ...)."""
        out = {f"{prefix}.a_seed": self.a_seed, f"{prefix}.b_seed": self.b_seed}
        for i, t in enumerate(TARGETS):
            out[f"{prefix}.g_a_{t}"] = self.g_a[i]
            out[f"{prefix}.g_b_{t}"] = self.g_b[i]
        return out


class HoraProjection(torch.nn.Module):
    """A frozen linear plus the HoRA update generated from its layer's shared generator."""

    def __init__(self, base, layer, target, alpha, dropout):
        super().__init__()
        self.base, self.layer, self.target = base, layer, target
        self.scale = alpha / layer.rank
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, x):
        a, b = self.layer.factors(self.target)
        return self.base(x) + self.scale * (self.dropout(x) @ a.t() @ b.t())


def native_prefix(layer):
    """The key prefix of a layer's generator in a native HoRA folder (`Classifier::save`)."""
    return f"base_model.model.encoder.layer.{layer}.attention.self.hora"


def attach(bert, rank, alpha, dropout, activation="tanh", tensors=None):
    """Freeze `bert` and put a HoRA generator on every layer's query and value; with `tensors`
    (a native folder's `adapter_model.safetensors`, loaded) start from them, every key used
    exactly once. Returns the generators, a ModuleList (also kept as `bert.hora`)."""
    for p in bert.parameters():
        p.requires_grad_(False)
    layers = torch.nn.ModuleList()
    used = set()
    for i, layer in enumerate(bert.encoder.layer):
        g = HoraLayer(bert.config.hidden_size, bert.config.num_attention_heads, rank, activation)
        if tensors is not None:
            with torch.no_grad():
                for key, p in g.named_native(native_prefix(i)).items():
                    if key not in tensors:
                        raise KeyError(f"native HoRA folder has no tensor {key}")
                    if tuple(tensors[key].shape) != tuple(p.shape):
                        raise ValueError(f"{key}: shape {tuple(tensors[key].shape)}, expected {tuple(p.shape)}")
                    p.copy_(tensors[key])
                    used.add(key)
        layers.append(g)
        attn = layer.attention.self
        attn.query = HoraProjection(attn.query, g, 0, alpha, dropout)
        attn.value = HoraProjection(attn.value, g, 1, alpha, dropout)
    if tensors is not None and set(tensors) != used:
        raise KeyError(f"native HoRA folder has tensors no generator takes: {sorted(set(tensors) - used)[:4]}")
    bert.hora = layers
    return layers
