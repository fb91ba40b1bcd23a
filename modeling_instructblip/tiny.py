"""Tiny InstructBLIP models and tokenizers built from nothing, for the demo and the tests.

Nothing here is downloaded: tokenizers are trained on a small corpus in a second or two with the
`tokenizers` library and wrapped in the real transformers tokenizer classes (so BOS/EOS handling is
the real one), and configs are scaled-down copies of the paper's. This module is not shipped to the
Hub with the model code (no Hub-shipped file imports it).
"""

import json

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import BertTokenizer, LlamaTokenizer, T5Tokenizer

from .configuration_instructblip import InstructBlipConfig, InstructBlipQFormerConfig, InstructBlipVisionConfig


CORPUS = [
    "A short image caption: a red square and a blue circle on a white background.",
    "A photo of a cat sitting on a mat next to a dog.",
    "Question: what color is the square? Short answer: red",
    "Question: how many circles are there? Short answer: one",
    "Q: is there a dog in the picture? A: yes",
    "Write a short description for the image. Two people walking along a beach at sunset.",
    "Based on the image, is this statement true or false? \"The cat is under the table.\" Answer: false",
    "Given the image, generate a question whose answer is: blue. Question: what color is the circle?",
    "OCR tokens: stop, sign, 42. Question: what does the sign say? Short answer: stop",
    "Context: plants need light. Question: which object is a plant? Options: (a) tree (b) rock. Answer: tree",
    "Dialog history: is it sunny? yes.\n Question: are there clouds? Short answer: no",
    "This is an image with: \"hello world\" written on it. Is it hateful? Answer: no",
    "The quick brown fox jumps over the lazy dog while three green apples fall from the tree.",
    "What is unusual about this image? A man is ironing clothes on the back of a yellow taxi.",
    "Describe the image in detail. There is a kitchen with a stove, a sink, a window and a small table.",
    "numbers 0 1 2 3 4 5 6 7 8 9 10 twenty thirty yes no true false left right up down",
]


def _corpus(extra):
    lines = list(CORPUS) + list(extra or [])
    return lines * 8


def train_llama_tokenizer(vocab_size: int = 400, extra_corpus=None) -> LlamaTokenizer:
    """A LLaMA-style BPE tokenizer (`<unk>`=0, `<s>`=1, `</s>`=2, BOS prepended, no EOS)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    tok.train_from_iterator(
        _corpus(extra_corpus),
        trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False),
    )
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return LlamaTokenizer(vocab=model["vocab"], merges=merges, add_prefix_space=True, add_bos_token=True, add_eos_token=False)


def _words(extra_corpus, lowercase: bool) -> list[str]:
    """The corpus's words and punctuation marks (BERT's pre-tokenization), most frequent first, ties
    broken alphabetically: a vocabulary that is the same in every process."""
    normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    splitter = pre_tokenizers.BertPreTokenizer()
    counts = {}
    for line in _corpus(extra_corpus):
        for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(line)):
            counts[word] = counts.get(word, 0) + 1
    return sorted(counts, key=lambda w: (-counts[w], w))


def train_t5_tokenizer(vocab_size: int = 400, extra_corpus=None) -> T5Tokenizer:
    """A T5-style Unigram tokenizer (`<pad>`=0, `</s>`=1, `<unk>`=2, EOS appended, no BOS). Its
    pieces (whole words, then single characters) and their scores come from corpus counts, not from
    a trainer, so the vocabulary is the same in every process (tokenizers' trainers break ties by
    hash order)."""
    words = _words(extra_corpus, lowercase=False)
    characters = sorted({c for w in words for c in w})
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(f"▁{w}", -3.0 - 0.01 * rank) for rank, w in enumerate(words[: vocab_size // 2])]
    pieces += [(c, -8.0) for c in characters] + [(f"▁{c}", -7.0) for c in characters]
    seen, vocab = set(), []
    for piece, score in pieces:
        if piece not in seen:
            seen.add(piece)
            vocab.append((piece, score))
    return T5Tokenizer(vocab=vocab[:vocab_size], extra_ids=0)


def train_bert_tokenizer(vocab_size: int = 300, extra_corpus=None) -> BertTokenizer:
    """A bert-base-uncased-style WordPiece tokenizer for the Q-Former (`[CLS] ... [SEP]`): the corpus's
    most frequent words, then every character alone and as a `##` continuation, so any corpus text
    tokenizes without `[UNK]`; built from counts, so the same in every process."""
    words = _words(extra_corpus, lowercase=True)
    characters = sorted({c for w in words for c in w})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    room = max(0, vocab_size - len(specials) - 2 * len(characters))
    tokens = specials + characters + [f"##{c}" for c in characters] + [w for w in words[:room] if len(w) > 1]
    return BertTokenizer(vocab={token: index for index, token in enumerate(dict.fromkeys(tokens))})


# Scaled-down copies of the paper's towers. Sizes are small enough for a CPU test in milliseconds
# and keep every structural feature: q/v-bias attention, cross-attention every 2nd Q-Former layer,
# separate query/text FFNs, a causal or encoder-decoder LLM.
TINY_VISION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=28, patch_size=7
)
TINY_QFORMER = dict(
    hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, max_position_embeddings=160
)
TINY_TEXT = {
    "llama": dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=512),
    "t5": dict(d_model=48, d_kv=12, d_ff=96, num_layers=2, num_decoder_layers=2, num_heads=4,
               feed_forward_proj="gated-gelu", dense_act_fn="gelu", tie_word_embeddings=False),
    "opt": dict(hidden_size=48, ffn_dim=96, num_hidden_layers=2, num_attention_heads=4, word_embed_proj_dim=48,
                max_position_embeddings=512),
    "gpt2": dict(n_embd=48, n_layer=2, n_head=4, n_positions=512),
    "qwen2": dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=512),
    "mistral": dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, max_position_embeddings=512, head_dim=12),
}
TINY_FOREIGN_VISION = {
    "clip_vision_model": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              image_size=28, patch_size=7),
    "siglip_vision_model": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                image_size=28, patch_size=7),
}


def tiny_config(
    text: str = "llama",
    tokenizer=None,
    qformer_vocab_size: int = 300,
    vision: str = "eva",
    num_query_tokens: int = 8,
    **overrides,
) -> InstructBlipConfig:
    """A tiny InstructBLIP config around `text` (a transformers model type). With `tokenizer` (the
    LLM tokenizer, `<image>` already added), the vocabulary and special ids come from it."""
    text_config = dict(TINY_TEXT[text], model_type=text)
    if tokenizer is not None:
        text_config["vocab_size"] = len(tokenizer)
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(tokenizer, name)
            if value is not None:
                text_config[name] = value
        if text == "t5":
            text_config["decoder_start_token_id"] = tokenizer.pad_token_id
    else:
        text_config["vocab_size"] = 120
    if vision == "eva":
        vision_config = dict(TINY_VISION)
    else:
        vision_config = dict(TINY_FOREIGN_VISION[vision], model_type=vision)
    image_token_index = None
    if tokenizer is not None and "<image>" in tokenizer.get_vocab():
        image_token_index = tokenizer.convert_tokens_to_ids("<image>")
    return InstructBlipConfig(
        vision_config=vision_config,
        qformer_config=dict(TINY_QFORMER, vocab_size=qformer_vocab_size),
        text_config=text_config,
        num_query_tokens=num_query_tokens,
        image_token_index=overrides.pop("image_token_index", image_token_index),
        **overrides,
    )


def build(text: str = "llama", vision: str = "eva", seed: int = 0, num_query_tokens: int = 8, image_size: int | None = None):
    """A tiny random InstructBLIP and its processor (tokenizers trained here), ready to save as a
    Hub folder. The image processor's size follows the vision tower's (28 px unless `image_size`)."""
    import torch

    from .modeling_instructblip import InstructBlipForConditionalGeneration
    from .processing_instructblip import InstructBlipImageProcessor, InstructBlipProcessor

    is_encoder_decoder = text == "t5"
    tokenizer = train_t5_tokenizer() if is_encoder_decoder else train_llama_tokenizer()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token
    image_size = image_size or TINY_VISION["image_size"]
    processor = InstructBlipProcessor(
        image_processor=InstructBlipImageProcessor(size=image_size),
        tokenizer=tokenizer,
        qformer_tokenizer=train_bert_tokenizer(),
        num_query_tokens=num_query_tokens,
        is_encoder_decoder=is_encoder_decoder,
    )
    config = tiny_config(
        text,
        tokenizer=processor.tokenizer,
        qformer_vocab_size=len(processor.qformer_tokenizer),
        vision=vision,
        num_query_tokens=num_query_tokens,
    )
    config.vision_config.image_size = image_size
    torch.manual_seed(seed)
    model = InstructBlipForConditionalGeneration(config).eval()
    return model, processor
