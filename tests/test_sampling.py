"""Sampling: seeds, top-k/top-p, constraints, stop tokens, batching, streaming, sliding window."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cadenza.config import ModelConfig
from cadenza.errors import ConfigError, ShapeError
from cadenza.model import SparseTransformer
from cadenza.sampling import Decoder, TokenSet, filter_logits, generate, stream, window_keep

V = 17



@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=V, d_model=16, n_layers=2, n_heads=2, max_len=32,
                      attention="strided", stride=4, integration="merged")
    m = SparseTransformer(cfg)
    with torch.no_grad():  # sharpen the output distribution a little so greedy paths vary
        m.head.weight.mul_(20)
    return m.eval()


def greedy_reference(model, prompt, steps):
    """Greedy decoding by full forwards over the documented sliding window."""
    max_len, keep = model.config.max_len, window_keep(model.config.max_len)
    ctx, start, out = list(prompt), 0, []
    if len(ctx) > max_len:
        start = len(ctx) - keep
    with torch.no_grad():
        for _ in range(steps):
            if len(ctx) - start > max_len:
                start = len(ctx) - keep
            logits = model(torch.tensor([ctx[start:]]))[0, -1]
            tok = int(logits.argmax())
            ctx.append(tok)
            out.append(tok)
    return out


def test_same_seed_same_tokens_and_stream_matches(model):
    a = generate(model, [1, 2, 3], 20, seed=7)
    b = generate(model, [1, 2, 3], 20, seed=7)
    c = generate(model, [1, 2, 3], 20, seed=8)
    assert a == b and len(a) == 20 and all(0 <= t < V for t in a)
    assert a != c
    assert list(stream(model, [1, 2, 3], 20, seed=7)) == a
    torch.manual_seed(3)
    d = generate(model, [1, 2, 3], 10)
    torch.manual_seed(3)
    assert generate(model, [1, 2, 3], 10) == d  # without a seed, torch's global seed decides


def test_greedy_equals_full_forward_argmax_and_top_k_1(model):
    prompt = [5, 1, 9, 9, 2, 11, 0]
    ref = greedy_reference(model, prompt, 15)
    assert generate(model, prompt, 15, temperature=0) == ref
    assert generate(model, prompt, 15, top_k=1, seed=1) == ref
    assert generate(model, torch.tensor(prompt), 15, temperature=0) == ref


def test_sliding_window_beyond_max_len(model):
    # max_len 32: a 40-token prompt is cut, and 60 more tokens slide the window repeatedly.
    prompt = [(7 * i) % V for i in range(40)]
    got = generate(model, prompt, 60, temperature=0)
    assert got == greedy_reference(model, prompt, 60)
    short = generate(model, [3], 70, seed=0, top_p=0.9)
    assert len(short) == 70


def test_batched_sampling(model):
    prompts = [[1, 2, 3, 4], [4, 3, 2, 1], [0, 0, 0, 0]]
    greedy = generate(model, prompts, 12, temperature=0)
    assert [len(r) for r in greedy] == [12, 12, 12]
    for p, row in zip(prompts, greedy):
        assert row == greedy_reference(model, p, 12)
    sampled = generate(model, torch.tensor(prompts), 12, seed=5)
    assert sampled == generate(model, prompts, 12, seed=5)
    steps = list(stream(model, prompts, 5, seed=5))
    assert len(steps) == 5 and all(len(s) == 3 for s in steps)
    assert [list(col) for col in zip(*steps)] == [r[:5] for r in sampled]


def test_constraint_masks_before_sampling(model):
    seen = []

    def even_only(logits, context):
        seen.append(context.shape)
        allowed = torch.zeros_like(logits, dtype=torch.bool)
        allowed[:, ::2] = True
        return allowed

    out = generate(model, [1, 2], 25, seed=0, constraint=even_only)
    assert all(t % 2 == 0 for t in out)
    assert seen[0] == (1, 2) and seen[-1] == (1, 26)  # the context grows by one each step

    def prefer_three(logits, context):
        return logits.masked_fill(torch.arange(V) != 3, float("-inf"))

    assert generate(model, [[1], [2]], 4, seed=0, constraint=prefer_three) == [[3] * 4] * 2

    with pytest.raises(ConfigError, match="allowed no token"):
        generate(model, [1], 3, constraint=lambda lg, ctx: torch.zeros_like(lg, dtype=torch.bool))
    with pytest.raises(ConfigError, match="shaped like the logits"):
        generate(model, [1], 3, constraint=lambda lg, ctx: lg[:, :3])


def test_stop_tokens_end_each_sequence(model):
    def force_stop_at(step_of_row):
        def constraint(logits, context):
            out = logits.clone()
            step = context.shape[1] - 2
            for r, s in enumerate(step_of_row):
                if step == s:
                    out[r] = float("-inf")
                    out[r, 16] = 0.0
                else:
                    out[r, 16] = float("-inf")
            return out
        return constraint

    one = generate(model, [1, 2], 10, seed=0, stop_tokens=[16], constraint=force_stop_at([3]))
    assert len(one) == 4 and one[-1] == 16 and 16 not in one[:-1]
    rows = generate(model, [[1, 2], [3, 4]], 10, seed=0, stop_tokens=(16,),
                    constraint=force_stop_at([1, 5]))
    assert [len(r) for r in rows] == [2, 6] and rows[0][-1] == rows[1][-1] == 16
    steps = list(stream(model, [[1, 2], [3, 4]], 10, seed=0, stop_tokens=(16,),
                        constraint=force_stop_at([1, 5])))
    assert len(steps) == 6 and steps[2][0] is None and steps[5][1] == 16


@settings(max_examples=40, deadline=None)
@given(logits=st.lists(st.floats(-5, 5), min_size=2, max_size=12),
       top_k=st.one_of(st.none(), st.integers(1, 12)),
       top_p=st.one_of(st.none(), st.floats(0.05, 1.0)))
def test_filter_logits_keeps_top_k_and_the_nucleus(logits, top_k, top_p):
    x = torch.tensor([logits])
    kept = torch.isfinite(filter_logits(x, top_k, top_p))[0]
    assert (kept & (x[0] == x[0].max())).any()  # a most likely token always survives
    order = torch.argsort(x[0], descending=True, stable=True)
    if top_k is not None:
        assert int(kept.sum()) <= top_k
    if top_p is not None and top_k is None:
        probs = torch.softmax(x[0], -1)
        mass = float(probs[kept].sum())
        assert mass >= top_p - 1e-6
        # minimal: dropping the least likely kept token would fall below top_p
        smallest = float(probs[kept].min())
        assert mass - smallest < top_p + 1e-6
    assert torch.equal(filter_logits(x), x) and order.numel() == len(logits)


def test_top_k_and_top_p_restrict_sampling(model):
    torch.manual_seed(0)
    with torch.no_grad():
        logits = model(torch.tensor([[1, 2, 3]]))[0, -1]
    top3 = set(torch.topk(logits, 3).indices.tolist())
    outs = {generate(model, [1, 2, 3], 1, seed=s, top_k=3)[0] for s in range(40)}
    assert outs <= top3
    probs = torch.softmax(logits, -1)
    best = int(probs.argmax())
    tiny_p = float(probs[best]) * 0.5  # nucleus smaller than the top token: only it remains
    assert {generate(model, [1, 2, 3], 1, seed=s, top_p=tiny_p)[0] for s in range(10)} == {best}


def test_argument_errors_and_training_mode_restored(model):
    with pytest.raises(ConfigError):
        generate(model, [1], 3, temperature=-1)
    with pytest.raises(ConfigError):
        generate(model, [1], 3, top_k=0)
    with pytest.raises(ConfigError):
        generate(model, [1], 3, top_p=1.5)
    with pytest.raises(ConfigError):
        generate(model, [1], -1)
    with pytest.raises(ConfigError):
        generate(model, [1], 3, stop_tokens=[V])
    with pytest.raises(ShapeError, match="equal lengths"):
        generate(model, [[1, 2], [3]], 3)
    with pytest.raises(ShapeError, match="outside the vocabulary"):
        generate(model, [1, V], 3)
    with pytest.raises(ShapeError):
        generate(model, [], 3)
    with pytest.raises(ConfigError):
        stream(model, [1], 3, top_k=-2)  # checked at the call, not at the first next()
    assert generate(model, [1, 2], 0) == []
    model.train()
    generate(model, [1], 2, seed=0)
    assert model.training
    model.eval()


# --------------------------------------------------------------------------- the Decoder itself
class EveryOther(TokenSet):
    """Forces ``tok`` after every free choice, and allows ``free`` otherwise."""

    def __init__(self, tok, free):
        self.tok, self.free, self.fed = tok, torch.tensor(free), []

    def start(self, context):
        self.fed = list(context)

    def allowed(self):
        return torch.tensor([self.tok]) if self.fed[-1] != self.tok else self.free

    def feed(self, tok):
        self.fed.append(tok)


def test_a_token_set_forces_tokens_without_sampling(model):
    rule = EveryOther(5, [1, 2, 3])
    dec = Decoder(model, [5], constraint=rule, seed=4)
    for _ in range(6):
        before = dec.generator.get_state()
        taken = dec.step()
        assert len(taken) == 2 and taken[0] in (1, 2, 3) and taken[1] == 5   # chosen, then forced
        assert not torch.equal(before, dec.generator.get_state())           # the free choice sampled
    forced_only = Decoder(model, [5, 1], constraint=EveryOther(5, [1, 2, 3]), seed=4)
    before = forced_only.generator.get_state()
    assert forced_only.step(limit=1) == [5]
    assert torch.equal(before, forced_only.generator.get_state())           # a forced token draws nothing
    assert rule.fed == [5] + dec.context[1:] and dec.new == 12
    assert generate(model, [5], 7, seed=4, constraint=EveryOther(5, [1, 2, 3])) == dec.context[1:8]
    with pytest.raises(ConfigError, match="one sequence"):
        Decoder(model, [[5], [5]], constraint=EveryOther(5, [1, 2, 3]))


def test_token_set_decoding_slides_like_the_plain_loop(model):
    everything = type("All", (TokenSet,), {"allowed": lambda self: torch.arange(V)})()
    prompt = [(3 * i) % V for i in range(40)]
    assert generate(model, prompt, 60, temperature=0, constraint=everything) == greedy_reference(model, prompt, 60)


def test_fork_and_restart_read_like_a_fresh_decoder(model):
    dec = Decoder(model, [1, 2, 3], seed=0)
    for t in (4, 5):
        dec.take(t)
    branch = dec.fork()
    branch.take(6)
    fresh = Decoder(model, [1, 2, 3, 4, 5, 6], seed=0)
    assert torch.allclose(branch.probs(), fresh.probs(), atol=1e-5)
    assert dec.context == [1, 2, 3, 4, 5] and branch.context == [1, 2, 3, 4, 5, 6]
    assert torch.allclose(dec.probs(), Decoder(model, [1, 2, 3, 4, 5], seed=0).probs(), atol=1e-5)
    dec.step()                                        # uses the generator
    twin = dec.fork()
    assert [twin.step() for _ in range(5)] == [dec.step() for _ in range(5)]   # a fork copies its state too
    dec.restart([7, 8])
    assert torch.allclose(dec.probs(), Decoder(model, [7, 8], seed=0).probs(), atol=1e-5)
    assert dec.cached == 2 and dec.new == 0


def test_a_subnormal_temperature_is_greedy(model):
    """Found by the API fuzz test: 2.2e-313 is 0 in float32, and dividing by it made NaNs."""
    prompt = [1, 2, 3]
    assert generate(model, prompt, 10, temperature=2.2250738585e-313) == greedy_reference(model, prompt, 10)
    everything = type("All", (TokenSet,), {"allowed": lambda self: torch.arange(V)})()
    assert generate(model, prompt, 10, temperature=1e-300, constraint=everything) == greedy_reference(model, prompt, 10)


def test_a_bad_prompt_leaves_the_model_in_its_mode(model):
    model.train()
    with pytest.raises(ShapeError):
        Decoder(model, [1, V])
    assert model.training
    model.eval()


def test_sample_among_draws_what_torch_multinomial_draws_over_the_filtered_logits():
    """The numpy pick is torch's own sampler (same random numbers, same token) on the logits
    ``filter_logits`` leaves: for temperatures, top-k and nuclei, token for token."""
    from cadenza.draw import sample_among

    def reference(logits, allowed, temperature, top_k, top_p, generator):
        sub = (logits[allowed] - logits[allowed].max()) / temperature
        sub = filter_logits(sub.unsqueeze(0), top_k, top_p).squeeze(0)
        return int(allowed[int(torch.multinomial(torch.softmax(sub, -1), 1, generator=generator))])

    torch.manual_seed(0)
    same = total = 0
    for trial in range(600):
        logits = torch.randn(200) * float(torch.rand(()) * 12 + 0.1)   # confident rows too (one token fills the nucleus)
        allowed = torch.randperm(200)[:int(torch.randint(2, 50, ()))].sort().values
        args = ([1.0, 0.7, 1.4][trial % 3], [None, 5][trial % 2], [None, 0.95, 0.5][trial % 3])
        g1, g2 = torch.Generator().manual_seed(trial), torch.Generator().manual_seed(trial)
        for _ in range(4):
            same += reference(logits, allowed, *args, g1) == sample_among(logits, allowed, *args, g2)
            total += 1
    assert same == total


def test_sample_among_keeps_to_the_nucleus_and_is_greedy_at_zero_temperature():
    from cadenza.draw import sample_among

    logits = torch.full((50,), -10.0)
    logits[7], logits[9], logits[11] = 5.0, 4.0, -3.0
    allowed = torch.tensor([7, 9, 11, 20])
    g = torch.Generator().manual_seed(1)
    drawn = {sample_among(logits, allowed, 1.0, None, 0.9, g) for _ in range(300)}
    assert drawn == {7, 9}                      # 11 and 20 lie outside the 0.9 nucleus
    assert {sample_among(logits, allowed, 0.0, None, None, g) for _ in range(5)} == {7}
