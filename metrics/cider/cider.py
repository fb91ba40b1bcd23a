"""CIDEr-D (NoCaps, Flickr30K) as the COCO caption evaluation toolkit (pycocoevalcap) computes it.

This file is a self-contained `evaluate` metric: `evaluate.load` copies it alone, so it imports
nothing from this repository and needs no Java. `ptb_tokenize`, `cider_d_scores` and `cider` are
the plain functions; the `Cider` class only wraps `cider`.

Two stages, each following pycocoevalcap 1.2:

1. Tokenisation (`tokenizer/ptbtokenizer.py`): all captions, one per line, go through Stanford
   CoreNLP 3.4.1's `PTBTokenizer -preserveLines -lowerCase`, then tokens in `PTB_PUNCTUATIONS` are
   dropped. `ptb_tokenize` re-implements the lexer rules that matter for captions. Two quirks are
   kept on purpose: `-lowerCase` turns "-LRB-" into "-lrb-", so the toolkit's removal list (which
   says "-LRB-") never removes brackets; and the captions are lexed as one stream, so a caption
   ending in an abbreviation ("etc.") gets a sentence-final "." when the next one starts with a
   capital. Not re-implemented (output may differ): URLs and e-mail addresses with unusual
   characters, SGML beyond simple tags, and the lexer's rarer abbreviations.
2. CIDEr-D (`cider/cider_scorer.py`): n-grams 1-4, tf-idf with document frequencies taken from
   the references of the evaluated set (so the score of a caption depends on the whole set),
   clipped hypothesis weights, Gaussian length penalty with sigma 6 (the "length" is the number of
   bigrams, as in the toolkit), cosine similarity averaged over n and references, times 10.

The metric reports the corpus mean x100 (Table 1 prints 120.0 where the toolkit prints 1.200).
"""

import math
import re
from collections import Counter, defaultdict

import datasets
import evaluate

_CITATION = """\
@inproceedings{vedantam2015cider,
  title={CIDEr: Consensus-based Image Description Evaluation},
  author={Vedantam, Ramakrishna and Zitnick, C. Lawrence and Parikh, Devi},
  booktitle={CVPR},
  year={2015}
}
"""

_DESCRIPTION = """\
CIDEr-D of generated captions against reference captions, PTB-tokenised, exactly as the COCO
caption evaluation toolkit computes it; document frequencies come from the evaluated set's
references. Reported x100.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): one generated caption per image.
    references (`list` of `list` of `str`): the reference captions of each image.
    tokenize (`bool`, default True): PTB-tokenise both sides first; pass False for captions that
        are already tokenised (space-separated, lower-cased).
Returns:
    cider (`float`): corpus CIDEr-D x100.
Examples:
    >>> metric = evaluate.load("metrics/cider")
    >>> metric.compute(predictions=["a dog runs", "a cat"], references=[["A dog is running."], ["A cat sleeps."]])
"""

# ---------------------------------------------------------------------------------------------
# PTB tokenisation
# ---------------------------------------------------------------------------------------------

# pycocoevalcap's removal list, verbatim: the bracket entries are upper case, so they never match
# the lower-cased tokens; "!!!" or "?!" are not in it either.
PTB_PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

# Letters only: Python's \w also takes numerals such as "½" or "²", which the lexer does not.
_LETTER = r"(?:(?![\u00B2\u00B3\u00B9\u00BC-\u00BE\u2070-\u209F\u2150-\u218F\u2460-\u24FF])[^\W\d_])"
_WORD = rf"(?:{_LETTER}|[\u00AD\u0300-\u036F])+"
_APOS = r"(?:['\u0092\u2019]|&apos;)"
_APOS_ETC = r"(?:['\u0092\u2019\u0091\u2018\u201B]|&apos;)"
_REDAUX = rf"{_APOS}(?:[msdMSD]|(?i:re|ve|ll))"
_HYPHEN = r"[-_\u058A\u2010\u2011]"
_ACRO = r"[A-Za-z](?:\.[A-Za-z])+"
_SPACE = r"[ \t\u00A0\u2000-\u200A\u3000]"
_NEWLINE = r"(?:\r|\r?\n|\u2028|\u2029|\u000B|\u000C|\u0085)"
_SPACENL = rf"(?:{_SPACE}|{_NEWLINE})"
# A following space or newline, then another one or a capital letter: the lexer's sentence end.
_SENTEND = rf"{_SPACENL}(?:{_SPACENL}|[A-Z]|<\/?[A-Za-z!][^>]*>)"
# Abbreviations kept whole even before a capital (titles), checked against CoreNLP 3.4.1.
_TITLES = (
    "Mr|Mrs|Ms|(?-i:M)iss|Drs?|Profs?|Sens?|Reps?|Attys?|Lt|Col|Gen|Messrs|Govs?|Adm|Rev|Maj|Sgt|Cpl|Pvt|Mt|Capt|"
    "Ste?|Ave|Pres|Lieut|Hon|Brig|Co?mdr|Pfc|Spc|Supts?|Det|vs|Alex|Wm|Jos|Cie|cf|Dept|ft"
)
# Abbreviations that also end a sentence when a sentence end follows (the "." is then repeated).
_SENTENCE_ABBREVIATIONS = (
    "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|Mon|Tue|Tues|Wed|Thu|Thurs|Fri|"
    "Ala|Ariz|Calif|Colo|Conn|Dak|Del|Fla|Ga|Ind|Kans?|Ky|La|Md|Mich|Minn|Mo|Mont|Neb|Nev|Okla|Penn|Tenn|Va|Vt|"
    "Wyo|Inc|Cos?|Corp|Pp?tys?|Ltd|Plc|Bancorp|Bhd|Assn|Univ|Intl|Sys|Prop|Ph|tel|est|ext|sq|"
    "Jr|Sr|Bros|Ed\\.D|Ph\\.D|Blvd|Rd|Esq|etc|al|seq"
)

_OPEN_CLOSE = {
    "(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-",
    "&lt;": "<", "&gt;": ">",
}
_FRACTIONS = {"\u00BC": "1/4", "\u00BD": "1/2", "\u00BE": "3/4", "\u2153": "1/3"}
_CURRENCY = {"\u00A2": "cents", "\u00A3": "#", "\u0080": "$", "\u00A4": "$", "\u20A0": "$", "\u20AC": "$"}


def _latex_quotes(token, probably_left):
    """The lexer's quote normalisation into ``, `, ', ''."""
    if probably_left:
        token = re.sub(r"&apos;|'", "`", token)
        token = re.sub(r'"|&quot;', "``", token)
    else:
        token = re.sub(r"&apos;|'", "'", token)
        token = re.sub(r'"|&quot;', "''", token)
    token = re.sub("[\u0091\u2018\u201B\u2039]", "`", token)
    token = re.sub("[\u0092\u2019\u203A]", "'", token)
    token = re.sub("[\u0093\u201C\u00AB]", "``", token)
    return re.sub("[\u0094\u201D\u00BB]", "''", token)


def _keep(text):
    return [text]


def _first(n):
    """Emit the first n characters of the match (the lexer's `yypushback` of the rest)."""
    return lambda text: ([text[:n]], n)


# (pattern, action). A pattern's group "ctx", if any, is trailing context: it counts towards the
# match length (so the lexer's longest-match choice is kept) but is not consumed. An action maps
# the matched text to the emitted tokens, or to (tokens, characters consumed).
_RULES = [
    (r"(?i:cannot)", _first(3)),
    (r"(?i:gonna|gotta|lemme|gimme|wanna)", _first(3)),
    (rf"{_APOS}(?i:t)(?P<ctx>(?i:is|was)(?![^\W_]))", lambda t: [_latex_quotes(t, False)]),
    (r"</?[A-Za-z!][^>]*>", _keep),
    (r"&(?:MD|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]", lambda t: ["--"]),
    (r"&amp;", lambda t: ["&"]),
    (rf"{_WORD}(?P<ctx>{_REDAUX})", lambda t: [t.replace("\u00AD", "")]),
    (rf"[A-Za-z\u00AD]*[A-MO-Za-mo-z]\u00AD*(?P<ctx>(?i:n){_APOS_ETC}(?i:t))", lambda t: [t.replace("\u00AD", "")]),
    (_WORD, lambda t: [t.replace("\u00AD", "")]),
    (
        (
            rf"{_APOS}(?i:n){_APOS}?",
            rf"[lLdDjJ]{_APOS}",
            rf"(?i:dunkin|somethin|ol){_APOS}",
            rf"{_APOS}(?i:em)",
            rf"[A-HJ-XZn]{_APOS_ETC}{_LETTER}{{2,}}",
            rf"{_APOS}[2-9]0(?i:s)",
            rf"{_APOS}(?i:till?)",
            rf"{_LETTER}+[aeiouyAEIOUY]{_APOS_ETC}[aeiouA-Z]{_LETTER}*",
            rf"{_APOS}(?i:cause)",
            r"(?i:cont'd\.?|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l)",
        ),
        _keep,
    ),
    (rf"[yY]{_APOS}(?P<ctx>{_LETTER})", _keep),
    (r"https?://[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-]", _keep),
    (
        r"(?:(?:www\.(?:[^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4})"
        r"|(?:(?:[^ \t\n\f\r\"`'<>|.!?(){},\-_$]+\.)+(?:com|net|org|edu)))"
        r"(?:/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])?",
        _keep,
    ),
    (r"[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00A0]*@(?:[^ \t\n\f\r\"<>|().\u00A0]+\.)+[a-zA-Z]{2,4}", _keep),
    (rf"{_REDAUX}(?P<ctx>[^A-Za-z])", lambda t: [_latex_quotes(t, False)]),
    (rf"(?i:n){_APOS_ETC}(?i:t)", lambda t: [_latex_quotes(t, False)]),
    (r"\d{1,2}[-/]\d{1,2}[-/]\d{2,4}", _keep),
    (r"[-+]?(?:\d*(?:[.:,\u00AD]\d+)+|\d+)", lambda t: [t.replace("\u00AD", "")]),
    (r"(?:\d{1,4}[- \u00A0])?\d{1,4}(?:\\?/|\u2044)\d{1,4}", lambda t: [t.replace(" ", "\u00A0")]),
    (r"[\u00BC\u00BD\u00BE\u2153]", lambda t: [_FRACTIONS[t]]),
    (
        r"-(?:RRB|LRB|RCB|LCB|RSB|LSB)-|C\.D\.s|(?i:pro-|anti-)|S(?:&|&amp;)P-500|S(?:&|&amp;)Ls"
        rf"|(?i:cap){_APOS}n|c{_APOS}est",
        lambda t: [t.replace("&amp;", "&")],
    ),
    (r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}", _keep),
    (r"[A-Z]*\$|#", _keep),
    (r"[\u00A2\u00A3\u00A4\u00A5\u0080\u20A0\u20AC\u060B\u0E3F\u20A4\uFFE0\uFFE1\uFFE5\uFFE6]",
     lambda t: [_CURRENCY.get(t, t)]),
    # Abbreviations: before a sentence end the "." is emitted twice ("etc." then ".").
    (rf"(?:{_ACRO}|(?i:{_SENTENCE_ABBREVIATIONS}))\.(?P<ctx>{_SENTEND})", lambda t: [t, "."]),
    (rf"(?:{_ACRO}|(?i:{_SENTENCE_ABBREVIATIONS}|{_TITLES}))\.", _keep),
    # A single letter and "." is an initial unless a sentence end follows.
    (rf"[A-Za-z]\.(?P<ctx>{_SENTEND})", lambda t: [t[:-1], "."]),
    (r"[A-Za-z]\.", _keep),
    (rf"(?i:ca|figs?|prop|nos?|art|bldg|pp|op)\.(?P<ctx>{_SPACE}*\d)", _keep),
    (rf"{_ACRO}(?P<ctx>{_SPACENL})", _keep),
    # Words joined by periods ("runs.A", "Ph.D", "3.x"): one token when a letter follows each period.
    (r"[^\W_]+(?:\.[A-Za-z][^\W_]*)+", _keep),
    (r"[\w]*@[\w]+", _keep),
    (rf"{_APOS}\d\d(?P<ctx>{_SPACENL})", _keep),
    (rf"{_WORD}\.(?P<ctx>[,;:])", lambda t: [t.replace("\u00AD", "")]),
    (
        r"(?:\(\d{3}\)[ \u00A0]?|\d{3}[- \u00A0.])\d{3}[- \u00A0.]\d{4}",
        lambda t: [t.replace(" ", "\u00A0").replace("(", "-LRB-").replace(")", "-RRB-")],
    ),
    (r'(?:"|&quot;)(?P<ctx>[A-Za-z0-9$])', lambda t: [_latex_quotes(t, True)]),
    (r'"|&quot;', lambda t: [_latex_quotes(t, False)]),
    (r"[+%&\u2030\u2031~^|\\=/]", _keep),
    (r"[\[\](){}<>]|&lt;|&gt;", lambda t: [_OPEN_CLOSE.get(t, t)]),
    (r"-+", lambda t: ["--"] if 3 <= len(t) <= 4 else [t]),
    (r"\.{3,5}|(?:\.[ \u00A0]){2,4}\.|[\u0085\u2026]", lambda t: ["..."]),
    (r"@+|#+|_+|\*+", _keep),
    (r"[,;:]|[?!]+|[.\u00A1\u00BF]", _keep),
    (rf"[A-Za-z0-9][A-Za-z0-9.,\u00AD]*(?:-(?:[A-Za-z0-9\u00AD]+|{_ACRO}\.))+(?:\.(?P<ctx>[,;:]))?",
     lambda t: [t.replace("\u00AD", "")]),
    (
        rf"(?:[dDoOlL]{_APOS_ETC}[^\W_])?[^\W_]+(?:{_HYPHEN}(?:[dDoOlL]{_APOS_ETC}[^\W_])?[^\W_]+)*"
        r"(?:\.(?P<ctx>[,;:]))?",
        _keep,
    ),
    (r"[A-Z]+(?:(?:[+&]|&amp;)[A-Z]+)+", lambda t: [t.replace("&amp;", "&")]),
    (r"'(?P<ctx>[A-Za-z][^ \t\n\r\u00A0])", lambda t: [_latex_quotes(t, True)]),
    (_REDAUX, lambda t: [_latex_quotes(t, False)]),
    (
        rf"''|[`\u2018\u2019\u201A\u201B\u201C\u201D\u0091\u0092\u0093\u0094\u201E\u201F\u2039\u203A\u00AB\u00BB]{{1,2}}|{_APOS}",
        lambda t: [_latex_quotes(t, False)],
    ),
    (r"[\u00A6\u00A7\u00A8\u00A9\u00AC\u00AE\u00AF\u00B0-\u00BA\u00D7\u00F7\u2020-\u2023\u2032-\u2038\u2190-\u21FF"
     r"\u2200-\u22FF\u2600-\u26FF]", _keep),
]
# A rule may list alternatives: each is tried on its own, so the longest one wins as in the lexer.
_COMPILED_RULES = [
    (re.compile(alternative), action)
    for patterns, action in _RULES
    for alternative in (patterns if isinstance(patterns, tuple) else (patterns,))
]
_SKIPPED = re.compile(rf"(?:{_SPACE}|[\r\u2028\u2029\u000B\u000C\u0085\u200B\u200E\u200F\uFEFF\x00])+")


def _lex_line(line, following):
    """PTB tokens of one line; `following` is the text after it (trailing context across lines)."""
    text = line + following
    tokens, pos, end = [], 0, len(line)
    while pos < end:
        skipped = _SKIPPED.match(text, pos)
        if skipped:
            pos = skipped.end()
            continue
        best = None
        for pattern, action in _COMPILED_RULES:
            match = pattern.match(text, pos)
            if match is None:
                continue
            ctx_start = match.start("ctx") if "ctx" in pattern.groupindex and match.group("ctx") is not None else -1
            consumed = ctx_start if ctx_start >= 0 else match.end()
            if consumed > end:  # never consume into the next line
                continue
            length = match.end() - pos
            if best is None or length > best[0]:
                best = (length, action, text[pos:consumed])
        if best is None:  # an untokenizable character: the lexer deletes it
            pos += 1
            continue
        _, action, matched = best
        emitted = action(matched)
        if isinstance(emitted, tuple):
            emitted, used = emitted
        else:
            used = len(matched)
        tokens.extend(emitted)
        pos += used
    return tokens


def ptb_tokenize(captions):
    """Tokenise captions as pycocoevalcap's PTBTokenizer does: lex, lower-case, drop punctuation.

    Args:
        captions: a list of caption strings, lexed as one stream (one caption per line).
    Returns:
        A list of the same length: each caption's tokens joined by single spaces.
    """
    if isinstance(captions, str):
        raise ValueError("captions: expected a list of caption strings, got one string.")
    lines = [caption.replace("\n", " ") for caption in captions]
    results = []
    for i, line in enumerate(lines):
        following = "\n" + lines[i + 1] if i + 1 < len(lines) else ""
        tokens = [token.lower() for token in _lex_line(line, following)]
        results.append(" ".join(token for token in tokens if token not in PTB_PUNCTUATIONS))
    return results


# ---------------------------------------------------------------------------------------------
# CIDEr-D
# ---------------------------------------------------------------------------------------------


def _ngram_counts(sentence, n):
    words = sentence.split()
    return Counter(tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


def cider_d_scores(predictions, references, n=4, sigma=6.0):
    """Per-caption CIDEr-D of tokenised captions, on pycocoevalcap's scale (corpus score = their mean).

    Args:
        predictions: one tokenised caption (space-separated) per image.
        references: one list of tokenised reference captions per image.
        n: largest n-gram order.
        sigma: standard deviation of the Gaussian length penalty.
    Returns:
        A list of floats, one per image.
    """
    hypothesis_counts = [_ngram_counts(p, n) for p in predictions]
    reference_counts = [[_ngram_counts(r, n) for r in refs] for refs in references]

    document_frequency = defaultdict(float)
    for refs in reference_counts:
        for ngram in {ngram for ref in refs for ngram in ref}:
            document_frequency[ngram] += 1
    log_num_images = math.log(float(len(reference_counts)))

    def tfidf(counts):
        vectors = [{} for _ in range(n)]
        norms = [0.0] * n
        num_bigrams = 0
        for ngram, term_frequency in counts.items():
            order = len(ngram) - 1
            weight = float(term_frequency) * (log_num_images - math.log(max(1.0, document_frequency[ngram])))
            vectors[order][ngram] = weight
            norms[order] += weight * weight
            if order == 1:  # the toolkit's "length" counts bigrams, not words
                num_bigrams += term_frequency
        return vectors, [math.sqrt(x) for x in norms], num_bigrams

    def similarity(hyp, ref):
        (vec_h, norm_h, len_h), (vec_r, norm_r, len_r) = hyp, ref
        penalty = math.e ** (-(float(len_h - len_r) ** 2) / (2 * sigma**2))
        values = []
        for order in range(n):
            value = sum(min(w, vec_r[order].get(g, 0.0)) * vec_r[order].get(g, 0.0) for g, w in vec_h[order].items())
            if norm_h[order] != 0 and norm_r[order] != 0:
                value /= norm_h[order] * norm_r[order]
            values.append(value * penalty)
        return values

    scores = []
    for hyp_counts, refs in zip(hypothesis_counts, reference_counts):
        hyp = tfidf(hyp_counts)
        per_order = [0.0] * n
        for ref_counts in refs:
            for order, value in enumerate(similarity(hyp, tfidf(ref_counts))):
                per_order[order] += value
        scores.append(sum(per_order) / n / len(refs) * 10.0)
    return scores


def cider(predictions, references, tokenize=True) -> dict:
    """Corpus CIDEr-D x100 of captions against references.

    Args:
        predictions: one caption per image.
        references: one non-empty list of reference captions per image.
        tokenize: PTB-tokenise both sides first (as the toolkit does); False for tokenised text.
    Returns:
        {"cider": float}
    """
    predictions, references = list(predictions), list(references)
    if not predictions:
        raise ValueError("predictions: got an empty list; nothing to evaluate.")
    if len(predictions) != len(references):
        raise ValueError(f"references: got {len(references)} for {len(predictions)} predictions.")
    if not all(isinstance(p, str) for p in predictions):
        raise ValueError("predictions: expected one caption string per image.")
    for refs in references:
        if isinstance(refs, str) or not refs or not all(isinstance(r, str) for r in refs):
            raise ValueError("references: expected one non-empty list of caption strings per prediction.")
    if tokenize:
        # One stream in the toolkit's order: all references, then all predictions (it tokenises
        # each side in its own call).
        flat = ptb_tokenize([r for refs in references for r in refs])
        it = iter(flat)
        references = [[next(it) for _ in refs] for refs in references]
        predictions = ptb_tokenize(predictions)
    scores = cider_d_scores(predictions, references)
    return {"cider": 100.0 * sum(scores) / len(scores)}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Cider(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.List(datasets.Value("string"))}
            ),
            codebase_urls=["https://github.com/salaniz/pycocoevalcap"],
        )

    def _compute(self, predictions, references, tokenize=True):
        return cider(predictions, references, tokenize=tokenize)
