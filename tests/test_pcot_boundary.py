"""P-CoT training sees the token ids sampling sees at the prompt/program boundary (issue 31, item 0).

Sampling conditions a P-CoT model on `encode_prompt(render_generation_prompt(question))`, whose text
ends with the program header's newline. With byte-level BPE that lone newline is its own pre-token,
while in the plain prompt + whole program the same newline merges with the body's indentation. These
tests check, for the preset tokenizer and a GPT-2-style one (with and without a Llama-3-style BOS),
that SFT, offline and online self-training features start with exactly the sampling prompt ids, that
the loss starts right after them, and that N-CoT tokenisation is what it always was.
"""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from reft.config import load_config
from reft.data.example import AnswerKind, CotKind, Example
from reft.data.prompts import (
    program_header,
    render_generation_prompt,
    render_prompt,
    render_target,
    split_training_text,
)
from reft.data.synthetic import SynthConfig, generate_problems
from reft.data.tokenize import (
    IGNORE_INDEX,
    SFTFeatures,
    encode_prompt,
    encode_target,
    tokenize_sft,
)
from reft.evaluate.predict import GradedCompletion, QuestionResult
from reft.train.config import SelfTrainConfig
from reft.train.rollout import encode_prompts
from reft.train.self_train import select_self_training_data, tokenize_records

PROBLEMS = generate_problems(SynthConfig(seed=5), "train", 6)
PYTHON = [problem.to_example(CotKind.python) for problem in PROBLEMS]
NL = [problem.to_example(CotKind.nl) for problem in PROBLEMS]


def _gpt2_style_tokenizer(with_bos: bool) -> PreTrainedTokenizerFast:
    """GPT-2's pre-tokenisation (ByteLevel with its regex, digits not split), BPE trained here on a few
    hundred synthetic texts; `with_bos` adds a BOS to every encoding, as Llama 3's tokenizer does."""
    problems = generate_problems(SynthConfig(), "train", 300)
    texts = [render_prompt(p.question) + p.nl_cot for p in problems] + [p.program for p in problems]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500,
        special_tokens=["<|endoftext|>", "<|begin_of_text|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    if with_bos:
        bos = ("<|begin_of_text|>", backend.token_to_id("<|begin_of_text|>"))
        template = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", special_tokens=[bos]
        )
        backend.post_processor = template
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|endoftext|>",
        bos_token="<|begin_of_text|>" if with_bos else None,
        clean_up_tokenization_spaces=False,
    )


@pytest.fixture(scope="module", params=["preset", "gpt2", "gpt2+bos"])
def tokenizer(request, tiny_tokenizer):
    """The preset tokenizer (`reft.models.tokenizer.train_tokenizer`) or a GPT-2-style one."""
    if request.param == "preset":
        return tiny_tokenizer
    return _gpt2_style_tokenizer(with_bos=request.param == "gpt2+bos")


def _sampling_prompt(tokenizer, question: str) -> list[int]:
    """The ids a P-CoT model is conditioned on at sampling time (evaluation and rollouts)."""
    return encode_prompt(tokenizer, render_generation_prompt(question, CotKind.python))


def _assert_trained_after_sampling_prompt(
    tokenizer, feature: SFTFeatures, question: str, program: str
) -> None:
    """Sampling prompt ids = exact prefix without loss; then the body + EOS, all in the loss; the ids
    decode to the plain prompt + the full program."""
    prompt = _sampling_prompt(tokenizer, question)
    body = program.removeprefix(program_header(question))
    assert feature.input_ids[: len(prompt)] == prompt
    assert feature.labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    assert feature.labels[len(prompt) :] == feature.input_ids[len(prompt) :]
    assert feature.input_ids[len(prompt) :] == encode_target(tokenizer, body)
    decoded = tokenizer.decode(feature.input_ids, skip_special_tokens=True)
    assert decoded == render_prompt(question) + program


def test_the_plain_prompt_path_breaks_the_boundary(tokenizer):
    """Why the cut matters: plain prompt + whole program does not start with the sampling prompt ids
    (the header's last newline merges with the body's indentation), for every tokenizer tested."""
    for example in PYTHON:
        old = encode_prompt(tokenizer, render_prompt(example.question)) + encode_target(
            tokenizer, render_target(example, CotKind.python)
        )
        prompt = _sampling_prompt(tokenizer, example.question)
        assert old[: len(prompt)] != prompt


def test_sft_pcot_features_start_with_the_sampling_prompt_ids(tokenizer):
    """Fails on the old tokenisation (plain prompt, then the whole program)."""
    features, report = tokenize_sft(PYTHON, tokenizer, CotKind.python, max_length=1024)
    assert (report.kept, report.without_header) == (len(PYTHON), 0)
    for feature, example in zip(features, PYTHON, strict=True):
        program = render_target(example, CotKind.python)
        _assert_trained_after_sampling_prompt(tokenizer, feature, example.question, program)
        assert feature.labels[-1] == tokenizer.eos_token_id


def _graded(text: str) -> GradedCompletion:
    return GradedCompletion(text, "1", True, 1.0, None, 9, True)


def test_offline_self_training_features_start_with_the_sampling_prompt_ids(tokenizer):
    """A sampled body (the header is put back by solution_text) and the gold program both train after
    the exact sampling prompt ids."""
    example = PYTHON[0]
    body = "    total = 3 + 4\n    result = total\n    return result\n"
    results = [QuestionResult(example.id, example.question, example.answer, [_graded(body)])]
    config = load_config(SelfTrainConfig, None, ["cot=python"])
    records, _ = select_self_training_data(results, [example], config)
    assert [r.source for r in records] == ["sample", "gold"]
    features, report = tokenize_records(records, tokenizer, CotKind.python, 1024, config.overlength)
    assert (report.kept, report.without_header) == (2, 0)
    for feature, record in zip(features, records, strict=True):
        _assert_trained_after_sampling_prompt(tokenizer, feature, record.question, record.target)


def test_online_self_training_gold_half_shares_the_rollout_prompt_ids(tokenizer):
    """Online own samples are trained on the rollout's own prompt ids (`sample_features`); the gold
    half (tokenize_sft) now starts with the very same ids."""
    gold, _ = tokenize_sft(PYTHON, tokenizer, CotKind.python, max_length=1024)
    rollout_prompts = encode_prompts(PYTHON, tokenizer, CotKind.python)
    for feature, prompt in zip(gold, rollout_prompts, strict=True):
        assert feature.input_ids[: len(prompt)] == prompt
        assert feature.labels[len(prompt)] != IGNORE_INDEX


def test_program_without_the_header_trains_after_the_plain_prompt(tokenizer):
    """A dataset whose programs carry another docstring (or none) keeps the old cut, counted."""
    question = "Tom has 3. He gets 4. How many?"
    program = 'def solution():\n    """Add them."""\n    return 3 + 4'
    example = Example("other", question, "7", AnswerKind.numeric, "other", program)
    [feature], report = tokenize_sft([example], tokenizer, CotKind.python, max_length=1024)
    prompt = encode_prompt(tokenizer, render_prompt(question))
    assert feature.input_ids == prompt + encode_target(tokenizer, program)
    assert feature.labels == [IGNORE_INDEX] * len(prompt) + encode_target(tokenizer, program)
    assert report.without_header == 1
    assert "1 without the P-CoT header" in report.summary()


def test_nl_features_are_the_plain_prompt_then_the_target(tokenizer):
    """N-CoT is unchanged: plain prompt ids (no loss), then target ids + EOS (loss)."""
    features, report = tokenize_sft(NL, tokenizer, CotKind.nl, max_length=1024)
    assert report.without_header == 0
    for feature, example in zip(features, NL, strict=True):
        prompt = tokenizer.encode(render_prompt(example.question), add_special_tokens=True)
        target = tokenizer.encode(render_target(example, CotKind.nl), add_special_tokens=False)
        target.append(tokenizer.eos_token_id)
        assert feature == SFTFeatures(
            example.id, prompt + target, [IGNORE_INDEX] * len(prompt) + target
        )


@pytest.mark.parametrize(
    ("target", "cot", "cut_after_header"),
    [
        ('def solution():\n    """Q?"""\n    return 1', CotKind.python, True),
        ('def solution():\n    """Other?"""\n    return 1', CotKind.python, False),
        ("    return 1", CotKind.python, False),
        ('def solution():\n    """Q?"""\n    return 1', CotKind.nl, False),
    ],
    ids=["header", "other-docstring", "no-header", "nl"],
)
def test_split_training_text_cuts_only_after_the_header(target, cot, cut_after_header):
    prompt, completion = split_training_text("Q?", target, cot)
    assert prompt + completion == render_prompt("Q?") + target, "the text itself never changes"
    plain = render_prompt("Q?")
    assert prompt == (render_generation_prompt("Q?", CotKind.python) if cut_after_header else plain)
