"""summary(): per-module trainable/frozen counts and compression figures, hand-computed."""

from __future__ import annotations

import pytest
from conftest import (
    BERT_HIDDEN,
    BERT_INTERMEDIATE,
    BERT_LABELS,
    BERT_LAYERS,
    BERT_MAX_POS,
    BERT_TYPE_VOCAB,
    BERT_VOCAB,
    CONV_SPECS,
    GPT2_EMBD,
    GPT2_LAYERS,
    GPT2_POSITIONS,
    GPT2_VOCAB,
    MLP_SHAPES,
    bert_config,
    conv_config,
    gpt2_config,
    make_bert,
    make_convnet,
    make_gpt2,
    make_mlp,
    mlp_config,
    param_count,
)

import decaylora as dl

R = 4
H, I = BERT_HIDDEN, BERT_INTERMEDIATE  # noqa: E741


def bert_wrapped_shapes() -> list[tuple[str, int, int]]:
    """(name, in, out) of every wrapped BERT Linear, from the config."""
    shapes = []
    for i in range(BERT_LAYERS):
        p = f"bert.encoder.layer.{i}."
        shapes += [(p + "attention.self.query", H, H), (p + "attention.self.key", H, H),
                   (p + "attention.self.value", H, H), (p + "attention.output.dense", H, H),
                   (p + "intermediate.dense", H, I), (p + "output.dense", I, H)]
    return shapes


def bert_original_params() -> int:
    """Hand count of BertForSequenceClassification's parameters from the config."""
    emb = BERT_VOCAB * H + BERT_MAX_POS * H + BERT_TYPE_VOCAB * H + 2 * H
    layer = 4 * (H * H + H) + (H * I + I) + (I * H + H) + 2 * (2 * H)
    pooler = H * H + H
    classifier = H * BERT_LABELS + BERT_LABELS
    return emb + BERT_LAYERS * layer + pooler + classifier


def test_bert_hand_count_matches_model():
    # guards the hand formula itself against a changed transformers layout
    assert bert_original_params() == param_count(make_bert())


def test_bert_summary_totals():
    original = bert_original_params()
    classifier = H * BERT_LABELS + BERT_LABELS
    shapes = bert_wrapped_shapes()
    adapters = sum(R * (n_in + n_out) + n_out for _, n_in, n_out in shapes)  # A, B and C
    model = dl.wrap(make_bert(), bert_config(r=R))
    s = dl.summary(model)
    assert s.trainable == adapters + classifier
    assert s.frozen == original - classifier
    assert s.total == original + adapters
    assert s.total == param_count(model)
    assert len(s.wrapped) == 6 * BERT_LAYERS
    dense = sum(n_in * n_out + n_out for _, n_in, n_out in shapes)
    lowrank = sum(R * (n_in + n_out) + n_out for _, n_in, n_out in shapes)
    assert s.wrapped_params_before == dense
    assert s.wrapped_params_after == lowrank
    assert s.wrapped_macs_before == sum(n_in * n_out for _, n_in, n_out in shapes)
    assert s.wrapped_macs_after == sum(R * (n_in + n_out) for _, n_in, n_out in shapes)
    assert s.params_after_compression == original - dense + lowrank
    t = s.to_dict()["totals"]
    assert t["trainable"] == s.trainable and t["frozen"] == s.frozen
    assert t["wrapped_layers"] == 6 * BERT_LAYERS
    assert t["params_after_compression"] == original - dense + lowrank


def test_bert_summary_rows():
    model = dl.wrap(make_bert(), bert_config(r=R))
    rows = {r.name: r for r in dl.summary(model).rows}
    q = rows["bert.encoder.layer.0.attention.self.query"]
    assert q.type == "DecayLinear" and q.rank == R
    assert (q.trainable, q.frozen) == (R * H + H * R + H, H * H + H)
    assert (q.params_before, q.params_after) == (H * H + H, R * (H + H) + H)
    assert (q.macs_before, q.macs_after) == (H * H, R * (H + H))
    o = rows["bert.encoder.layer.1.output.dense"]  # I -> H
    assert (o.trainable, o.frozen) == (R * I + H * R + H, I * H + H)
    assert (o.params_before, o.params_after) == (I * H + H, R * (I + H) + H)
    assert (o.macs_before, o.macs_after) == (I * H, R * (I + H))
    f = rows["bert.encoder.layer.1.intermediate.dense"]  # H -> I
    assert (f.trainable, f.frozen) == (R * H + I * R + I, H * I + I)
    c = rows["classifier"]
    assert (c.type, c.trainable, c.frozen, c.rank) == ("Linear", H * BERT_LABELS + BERT_LABELS, 0, None)
    we = rows["bert.embeddings.word_embeddings"]
    assert (we.type, we.trainable, we.frozen) == ("Embedding", 0, BERT_VOCAB * H)
    ln = rows["bert.encoder.layer.0.attention.output.LayerNorm"]
    assert (ln.trainable, ln.frozen) == (0, 2 * H)
    assert rows["bert.pooler.dense"].frozen == H * H + H
    # the inner modules of a wrapped layer are folded into its row
    assert not any(".base_layer" in n or ".lora_" in n for n in rows)


def test_summary_reads_real_requires_grad_flags():
    """The notes' trainable flags silently reverted: summary must show what is really set."""
    model = dl.wrap(make_bert(), bert_config(r=R))
    before = dl.summary(model)
    classifier = H * BERT_LABELS + BERT_LABELS
    for p in model.classifier.parameters():
        p.requires_grad_(False)
    model.bert.embeddings.LayerNorm.weight.requires_grad_(True)
    after = dl.summary(model)
    assert after.trainable == before.trainable - classifier + H
    assert after.frozen == before.frozen + classifier - H
    rows = {r.name: r for r in after.rows}
    assert (rows["classifier"].trainable, rows["classifier"].frozen) == (0, classifier)
    assert rows["bert.embeddings.LayerNorm"].trainable == H


def test_conv_summary_uses_grouped_formulas():
    model = dl.wrap(make_convnet(), conv_config(r=R))
    rows = {r.name: r for r in dl.summary(model).rows}
    for name, spec in CONV_SPECS.items():
        k = spec["kernel_size"]
        kk = k[0] * k[1] if isinstance(k, tuple) else k * k
        g = spec.get("groups", 1)
        out, fan_in = spec["out_channels"], spec["in_channels"] // g * kk
        bias = out if spec.get("bias", True) else 0
        row = rows[name]
        assert row.type == "DecayConv2d"
        assert row.params_before == out * fan_in + bias
        assert row.params_after == R * fan_in + out * (R // g) + out  # A, B, C
        assert row.macs_before == out * fan_in
        assert row.macs_after == R * fan_in + out * (R // g)
        assert row.trainable == row.params_after
        assert row.frozen == row.params_before


def test_mlp_summary_without_c():
    model = dl.wrap(make_mlp(), mlp_config(r=R, c_init="none"))
    s = dl.summary(model)
    expected_after = sum(R * (i + o) for i, o, _ in MLP_SHAPES)
    expected_before = sum(i * o + (o if b else 0) for i, o, b in MLP_SHAPES)
    assert s.trainable == expected_after
    assert s.frozen == expected_before
    assert s.wrapped_params_after == expected_after
    assert s.params_after_compression == expected_after


def test_gpt2_summary_counts_tied_embeddings_once():
    model = dl.wrap(make_gpt2(), gpt2_config(r=R))
    s = dl.summary(model)
    e = GPT2_EMBD
    per_block = ((e * 3 * e + 3 * e) + (e * e + e) + (e * 4 * e + 4 * e) + (4 * e * e + e)
                 + 2 * 2 * e)
    original = GPT2_VOCAB * e + GPT2_POSITIONS * e + GPT2_LAYERS * per_block + 2 * e
    adapters = GPT2_LAYERS * sum(R * (i + o) + o for i, o in
                                 [(e, 3 * e), (e, e), (e, 4 * e), (4 * e, e)])
    assert s.frozen == original  # lm_head shares wte: counted once
    assert s.trainable == adapters
    rows = {r.name: r for r in s.rows}
    assert rows["transformer.wte"].frozen == GPT2_VOCAB * e
    assert "lm_head" not in rows
    c_attn = rows["transformer.h.0.attn.c_attn"]
    assert c_attn.type == "DecayConv1D"
    assert (c_attn.params_before, c_attn.params_after) == (e * 3 * e + 3 * e, R * 4 * e + 3 * e)


def test_table_text():
    model = dl.wrap(make_bert(), bert_config(r=R))
    s = dl.summary(model)
    text = s.table()
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["module", "type", "trainable", "frozen"]
    assert "bert.encoder.layer.0.attention.self.query" in text
    q_line = next(x for x in lines if x.startswith("bert.encoder.layer.0.attention.self.query "))
    assert f"{H * H + H:,}→{R * 2 * H + H:,}" in q_line
    total_line = next(x for x in lines if x.startswith("TOTAL"))
    assert f"{s.trainable:,}" in total_line and f"{s.frozen:,}" in total_line
    assert f"{s.trainable:,} trainable of {s.total:,} parameters" in text
    assert f"{6 * BERT_LAYERS} wrapped layers" in text
    assert f"model after compression: {s.params_after_compression:,} parameters" in text
    assert str(s) == text
    short = s.table(max_rows=3)
    assert f"... {len(s.rows) - 3} more rows" in short
    assert "classifier" not in short


def test_summary_of_unwrapped_model():
    s = dl.summary(make_mlp())
    assert s.wrapped == []
    assert s.trainable == sum(i * o + (o if b else 0) for i, o, b in MLP_SHAPES)
    assert s.frozen == 0
    assert "wrapped layers" not in s.table()


@pytest.mark.parametrize("r", [2, 4])
def test_summary_rank_scales_counts(r):
    model = dl.wrap(make_mlp(), mlp_config(r=r))
    s = dl.summary(model)
    assert s.trainable == sum(r * (i + o) + o for i, o, _ in MLP_SHAPES)
    assert all(row.rank == r for row in s.wrapped)
