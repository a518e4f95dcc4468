"""SPEAR's sampling search (solver="spear": the gradient alone; gradinv.search.spear)."""


from gradinv import invert_layer
from gradinv.cases import make_victim
from gradinv.metrics import evaluate


def test_spear_baseline_b10():
    v = make_victim("cross_entropy", batch_size=10, width=500, random_state=2)
    res = invert_layer(v.grad_W.numpy(), v.grad_b.numpy(), solver="spear", random_state=0, max_time=600,
                       weight=v.layer.weight.detach().numpy(), bias=v.layer.bias.detach().numpy())
    ev = evaluate(v.inputs.numpy(), res.inputs, res.exact)
    assert ev["exact"] == 10 and ev["certified"] == 10
