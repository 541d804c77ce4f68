"""Rule-based query parser: a shopper's sentence -> `QueryPlan` (filters, exclusions, residual text).

Plain Python over the controlled vocabulary; the phrase index is built once per `Vocabulary` and parsing a
typical query takes well under a millisecond. The parser never raises on content, only on length
(`QueryTooLong`); what it cannot apply it says in `warnings`.

How the sentence is read:

* Tokens are lower-cased words after NFKC folding; hyphens and underscores split words ("t-shirt" ->
  "t shirt"), apostrophes stay inside words ("men's", "isn't"), "3/4" and "2.5" stay whole, symbols and emoji
  are dropped. "," is a list separator, "/" and "|" mean "or", "&" and "+" mean "and", ". ; ! ?" end a clause.
* Vocabulary phrases are matched longest first (up to the longest vocabulary phrase), plurals of the last word
  included ("t shirts", "polka dots"). Category group names that are not vocabulary terms ("footwear",
  "accessories") mean every category of the group; "pattern(s)"/"patterned" means any pattern but solid.
* Colours: a family word ("red", "grey") is every shade of the family, a shade word ("crimson", "navy") only
  that shade. Exclusions are not subtracted from filters: "blue but not navy" is filter color
  [teal, blue, sky-blue, navy] plus exclude color [navy]; the search drops the excluded items.
* Same field, several values: colours are the only multi-valued field of an item, so "red and blue",
  "red, blue" and "red blue" are two clauses (both colours required) while "red or maroon" (also "red/maroon",
  "red, blue or green") is one clause. Every other field holds one value per item, so all its positive mentions
  form one clause whatever joins them ("shirts and t-shirts" = either). "or" across noun phrases is
  approximated per field ("red dress or blue dress" = dress, red or blue); "or" between different kinds
  ("red or striped") cannot be expressed, so both are required and a warning says so.
* Negation: "no", "not", "without", "except", "excluding", "minus", "non", "never", "neither/nor", "isn't",
  "aren't", "don't", "but not", "other than", "anything but", "rather than", "instead of", "free of"; also the
  affixes "non-striped"/"nonstriped", "unprinted", "collarless", "print-free", which negate one term only.
  The negator covers the next vocabulary term and, after "or"/"nor", further terms of the same kind
  ("no stripes or checks", "no skirts or dresses"); after "and" or "," only terms of the same field ("not black
  and navy"); adjacent modifiers too ("no red stripes" excludes red and striped). It stops at a category or
  department after a modifier ("not black dresses" = dresses, not black), at an unrecognised word, at
  "with"/"but"/"for"/"that" and at a clause end. Negated print words set `has_print=False`; a negated
  "pattern" means solid. Negated words the vocabulary does not know ("no ruffles") cannot be filtered: they are
  listed in `unparsed` and a warning, but kept out of `residual` because ranking cannot express "not".
* Residual: unrecognised words, without stopwords and command words, in query order. Vocabulary terms inside a
  positive "with ..." phrase ("dresses with red flowers", "shirt with stripes") are also kept there: they name
  a visual detail ranking should see. A category or department inside such a phrase ("jeans with a belt") is a
  detail only, not a filter. Negated terms never reach the residual.
* Contradictions ("red and not red", "printed with no prints", "floral, no prints") keep both sides and add a
  warning containing "contradiction" (the plan itself then matches nothing). `has_print` holds
  one answer, so for "printed ... no prints" it is False and "printed" becomes a pattern clause over the
  printed patterns: the plan itself then matches nothing. A union of one field's values is never a
  contradiction ("plain patterned shirt" = any pattern), by the rule above.
"""

from __future__ import annotations

import re
import unicodedata
import weakref
from dataclasses import dataclass, field

from imgsearch_pipeline.search.plan import Clause, QueryPlan
from imgsearch_pipeline.vocab import Vocabulary, get_vocabulary

MAX_QUERY_CHARS = 512


class QueryTooLong(ValueError):
    """The query is longer than `MAX_QUERY_CHARS`; a search box never needs more, so it is refused."""

    def __init__(self, length: int) -> None:
        super().__init__(f"query is {length} characters long; the limit is {MAX_QUERY_CHARS} characters")


# Function words ------------------------------------------------------------------------------------------

_NEGATORS = {
    "no", "not", "without", "except", "excluding", "exclude", "minus", "sans", "never", "neither", "none",
    "avoid", "isn't", "isnt", "aren't", "arent", "doesn't", "doesnt", "don't", "dont", "wasn't", "weren't",
    "shouldn't", "shouldnt", "mustn't", "won't", "nothing",
}
_NEGATOR_PHRASES = {
    ("but", "not"), ("other", "than"), ("anything", "but"), ("everything", "but"), ("all", "but"),
    ("rather", "than"), ("instead", "of"), ("free", "of"), ("free", "from"), ("except", "for"),
    ("apart", "from"), ("aside", "from"),
}
_WITH = {"with", "featuring", "having"}
_OR = {"or", "nor"}
_AND = {"and", "plus"}
# Words that start a new part of the sentence: they end a negation and a "with" phrase.
_BREAKS = {
    "but", "only", "just", "that", "which", "who", "where", "for", "instead", "though", "although", "however",
    "yet", "also", "while", "whereas",
}
_STOPWORDS = {
    "a", "an", "the", "show", "me", "all", "find", "i", "i'm", "im", "want", "wanted", "wanting", "looking",
    "look", "some", "any", "get", "give", "need", "needs", "search", "searching", "please", "pls", "item",
    "items", "product", "products", "something", "stuff", "thing", "things", "one", "ones", "this", "these",
    "those", "is", "are", "was", "were", "be", "it", "its", "it's", "in", "of", "on", "at", "to", "my", "your",
    "our", "their", "his", "her", "them", "they", "you", "we", "do", "does", "did", "can", "could", "would",
    "should", "like", "love", "buy", "shop", "shopping", "see", "display", "list", "view", "got", "have",
    "has", "color", "colour", "colors", "colours", "colored", "coloured", "style", "styled", "type", "kind",
    "kinds", "sort", "available", "very", "really", "too", "so", "pair", "pairs", "there", "here", "what",
    "how", "anything", "everything", "more", "other", "others", "either", "both", "each", "wear", "wearing",
    "worn", "made", "let", "let's", "lets", "hi", "hello", "thanks", "go", "from", "by", "as",
}
_FUNCTION_PHRASES = {("shades", "of"): "STOP", ("shade", "of"): "STOP", ("check", "out"): "STOP"}
_PUNCT = {",": "SEP", ";": "END", ".": "END", "!": "END", "?": "END", "/": "OR", "|": "OR", "&": "AND", "+": "AND"}

_TOKEN = re.compile(r"\d+(?:[./]\d+)?|[^\W_]+(?:'[^\W_]+)*|[,;.!?/|&+]")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'", "\u02bc": "'"})
_HEADS = {"category", "department"}


def _scan(text: str) -> tuple[str, list[re.Match[str]]]:
    """The folded text and its word and punctuation tokens (see the module docstring for what stays whole)."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_APOSTROPHES)
    text = re.sub(r"\bw/o\b", "without", text)
    text = re.sub(r"\bw/(?!\d)", "with ", text)
    return text, list(_TOKEN.finditer(text))


def _function_kind(tokens: list[str], i: int) -> tuple[int, str, bool] | None:
    """(length, item kind, negates-one-term-only) of the function word or phrase at `i`, if any."""
    pair = tuple(tokens[i:i + 2])
    if pair in _NEGATOR_PHRASES:
        return 2, "NEG", False
    if pair in _FUNCTION_PHRASES:
        return 2, _FUNCTION_PHRASES[pair], False
    tok = tokens[i]
    if tok == "non":
        return 1, "NEG", True
    for words, kind in ((_NEGATORS, "NEG"), (_WITH, "WITH"), (_OR, "OR"), (_AND, "AND"), (_BREAKS, "BREAK"),
                        (_STOPWORDS, "STOP")):
        if tok in words:
            return 1, kind, False
    if tok in _PUNCT:
        return 1, _PUNCT[tok], False
    return None


# The phrase index ----------------------------------------------------------------------------------------


class _Lexicon:
    """The vocabulary's phrases in token form, plus value expansion; built once per vocabulary."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab
        self.phrases: dict[tuple[str, ...], str] = {}
        for term, key in vocab.term_index().items():
            tokens = tuple(m.group() for m in _scan(term)[1])
            if tokens:
                self.phrases.setdefault(tokens, key)
        self.groups: dict[str, list[str]] = {}
        for c in vocab.categories:
            self.groups.setdefault(c.group, []).append(c.id)
        for group in self.groups:
            if (group,) not in self.phrases and vocab.lookup(group) is None:
                self.phrases[(group,)] = f"group:{group}"
        self.solid = vocab.resolve("pattern", "solid")
        if self.solid:
            for word in ("pattern", "patterns", "patterned"):
                if (word,) not in self.phrases and vocab.lookup(word) is None:
                    self.phrases[(word,)] = "anypattern"
        self.max_len = max(len(p) for p in self.phrases)
        self.starts = {p[0] for p in self.phrases}
        self.printed = [p.id for p in vocab.patterns if p.has_print]
        self.unprinted = {p.id for p in vocab.patterns if not p.has_print}

    def match(self, tokens: list[str], i: int) -> tuple[int, str] | None:
        """(length, "kind:id") of the longest vocabulary phrase at `i`, plural last words accepted."""
        if not tokens[i][0].isalnum():
            return None
        for n in range(min(self.max_len, len(tokens) - i), 0, -1):
            span = tokens[i:i + n]
            if n > 1 and (span[0] not in self.starts or not span[-1][0].isalnum()):
                continue
            key = self.phrases.get(tuple(span)) or self.vocab.lookup(" ".join(span))
            if key:
                return n, key
        return None

    def affixed(self, token: str) -> str | None:
        """The modifier a negating affix is attached to: "nonstriped", "unprinted", "collarless"."""
        stems = []
        if token.startswith("non") and len(token) > 5:
            stems.append(token[3:])
        if token.startswith("un") and len(token) > 4:
            stems.append(token[2:])
        if token.endswith("less") and len(token) > 6:
            stems.append(token[:-4])
        for stem in stems:
            found = self.match([stem], 0)
            if found and self.values(found[1])[0] not in _HEADS:
                return found[1]
        return None

    def values(self, key: str) -> tuple[str, list[str]]:
        """(plan field, vocabulary ids) a phrase key stands for; field "print" for print words."""
        kind, _, ident = key.partition(":")
        if kind == "family":
            return "color", list(self.vocab.colors_in_family(ident))
        if kind == "group":
            return "category", list(self.groups[ident])
        if kind == "anypattern":
            return "pattern", [p for p in self.vocab.pattern_ids if p != self.solid]
        if kind == "attr":
            name, _, value = ident.partition(":")
            return name, [value]
        return kind, [ident] if ident else []


_LEXICONS: dict[int, tuple[weakref.ref[Vocabulary], _Lexicon]] = {}


def _lexicon(vocab: Vocabulary) -> _Lexicon:
    """The cached lexicon of this vocabulary object (dropped when the vocabulary is)."""
    hit = _LEXICONS.get(id(vocab))
    if hit and hit[0]() is vocab:
        return hit[1]
    lexicon = _Lexicon(vocab)
    key = id(vocab)
    # The callback holds the dict itself (module globals are None at interpreter exit) and drops only its own
    # entry (an id can be reused by a newer vocabulary).
    _LEXICONS[key] = (weakref.ref(vocab, lambda ref, key=key, cache=_LEXICONS:
                                  cache.pop(key) if cache.get(key, (None,))[0] is ref else None), lexicon)
    return lexicon


# Lexing --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Item:
    kind: str  # TERM NEG WITH OR AND SEP BREAK END STOP WORD
    start: int  # where its words are in the folded query (chips quote them as typed)
    end: int
    key: str = ""  # TERM: "kind:id"
    lead: str = ""  # TERM: "NEG"/"WITH" when the phrase itself opens with one ("no pattern", "with hood")
    single: bool = False  # NEG: covers one term only (affixes, "non")


def _lex(lexicon: _Lexicon, matches: list[re.Match[str]]) -> list[_Item]:
    """Tokens -> items: vocabulary phrases (longest first) win over function words of equal length."""
    tokens = [m.group() for m in matches]
    items: list[_Item] = []
    i = 0
    while i < len(tokens):
        term = lexicon.match(tokens, i)
        func = _function_kind(tokens, i)
        start = matches[i].start()
        if term and (not func or term[0] >= func[0]):
            n, key = term
            lead = "NEG" if tokens[i] in _NEGATORS else "WITH" if tokens[i] in _WITH else ""
            i += n
            after = tokens[i:i + 2]
            if after[:1] == ["free"] and after[1:] not in (["of"], ["from"]) and \
                    lexicon.values(key)[0] not in _HEADS:  # "print-free"
                items += [_Item("NEG", start, start, single=True), _Item("TERM", start, matches[i].end(), key)]
                i += 1
            else:
                items.append(_Item("TERM", start, matches[i - 1].end(), key, lead))
        elif func:
            n, kind, single = func
            if kind == "NEG" and tokens[i] == "but":
                start = matches[i + 1].start()  # the chip says "not navy", not "but not navy"
            items.append(_Item(kind, start, matches[i + n - 1].end(), single=single))
            i += n
        else:
            tok, end = tokens[i], matches[i].end()
            i += 1
            key = lexicon.affixed(tok)
            if key:
                items += [_Item("NEG", start, start, single=True), _Item("TERM", start, end, key)]
                continue
            possessive = lexicon.match([tok[:-2]], 0) if tok.endswith("'s") and len(tok) > 2 else None
            items.append(_Item("TERM", start, end, possessive[1]) if possessive else _Item("WORD", start, end))
    return items


# Parsing -------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Mention:
    field: str
    values: list[str]
    text: str

    def add(self, values: list[str], joiner: str, text: str, explicit: bool) -> None:
        """Union the values; the words join the chip when they were coordinated or add a value."""
        new = [v for v in values if v not in self.values]
        self.values += new
        if new or explicit:
            self.text = f"{self.text}{joiner}{text}"


@dataclass(slots=True)
class _Scope:
    """An open negation: what it covers so far decides which following terms it still covers."""

    start: int  # where the negator is, for the chip of its first term
    word: str  # the negator, for the chips of later terms
    in_with: bool  # it interrupted a "with" phrase, which resumes after it ("with no prints and red bows")
    single: bool = False
    head: str = ""  # "category" when it negates categories/departments, "modifier" otherwise
    last_field: str = ""
    dropping: bool = False  # it is negating unrecognised words ("no ruffles")
    mentions: dict[str, _Mention] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)

    def covers(self, field_: str, joiner: str) -> bool:
        is_head = field_ in _HEADS
        if self.dropping:
            # Only a modifier of the unknown word may follow it ("not dark blue" with "dark" unknown).
            return not is_head and not joiner
        if not self.head:
            return True
        heads = self.head == "category"
        if self.single or is_head != heads:
            return False
        if not joiner:
            return not heads
        return joiner == "OR" or _group(field_) == _group(self.last_field)


def _group(field_: str) -> str:
    return "pattern" if field_ == "print" else field_


_SYMBOL_WORDS = {"/": "or", "|": "or", "&": "and", "+": "and"}


class _Parser:
    """One left-to-right pass over the items, holding the open negation, "with" phrase and "or" run."""

    def __init__(self, lexicon: _Lexicon, folded: str) -> None:
        self.lex = lexicon
        self.folded = folded
        self.filters: list[_Mention] = []
        self.excludes: list[_Mention] = []
        self.by_field: dict[str, _Mention] = {}  # the one positive clause of each single-valued field
        self.color_chain: list[_Mention] = []  # colour clauses of a comma list, merged if it ends in "or"
        self.residual: list[str] = []
        self.unparsed: list[str] = []
        self.warnings: list[str] = []
        self.print_yes = ""
        self.print_no = ""
        self.scope: _Scope | None = None
        self.in_with = False
        self.joiner = ""  # the strongest coordinator since the previous term: "OR" > "AND" > "SEP"
        self.joiner_text = ", "  # how it reads on a chip
        self.or_run: list[str] | None = None  # "a or b" whose b did not merge into a clause yet
        self.or_merged = False
        self.last_text = ""
        self.last_field = ""

    def text(self, item: _Item) -> str:
        return self.folded[item.start:item.end]

    def feed(self, item: _Item) -> None:
        kind = item.kind
        if kind == "STOP":
            if self.scope and self.scope.dropping:
                self._close_scope()  # "no ruffles please, red": the unknown words were all it negated
            return
        if kind in ("OR", "AND", "SEP"):
            if kind == "OR" or not self.joiner or (kind == "AND" and self.joiner == "SEP"):
                word = _SYMBOL_WORDS.get(self.text(item), self.text(item))
                self.joiner, self.joiner_text = kind, ", " if kind == "SEP" else f" {word} "
            return
        if kind == "TERM":
            self._term(item)
            self.joiner = ""
            return
        if kind == "WORD":
            self._word(self.text(item))
            return
        fresh = self.scope and not self.scope.head and not self.scope.dropped
        if kind in ("WITH", "BREAK") and fresh:
            return  # "not with stripes", "not for kids": the negation goes on
        self._close_scope()
        self._end_or_run()
        self.joiner = ""
        if kind == "NEG":
            self.scope = _Scope(item.start, self.text(item), self.in_with, single=item.single)
        self.in_with = kind == "WITH"
        if kind == "END":
            self.color_chain = []

    def _term(self, item: _Item) -> None:
        field_, values = self.lex.values(item.key)
        if self.scope and self.scope.covers(field_, self.joiner):
            self._negate(item, field_, values)
            return
        self._close_scope(resume=True)
        text = self.text(item)
        if self.joiner == "OR":
            self._end_or_run()
            self.or_run = [self.last_text, text] if self.last_text else None
        elif self.joiner:
            self._end_or_run()
        if item.lead == "NEG":
            # A vocabulary phrase worded as a negation ("no pattern", "without sleeves") is a positive value
            # that also negates what is coordinated with it ("no pattern or prints").
            self._positive(field_, values, text)
            head = "category" if field_ in _HEADS else "modifier"
            self.scope = _Scope(item.start, text.split()[0], self.in_with, head=head, last_field=field_)
            self.in_with = False
            return
        if self.in_with or item.lead == "WITH":
            self.residual += [w for w in text.split() if w not in _WITH and w not in _STOPWORDS]
            self.in_with = True
            if field_ in _HEADS:
                return  # "jeans with a belt": the belt is a detail to rank on, not a second category
        self._positive(field_, values, text)

    def _positive(self, field_: str, values: list[str], text: str) -> None:
        linked = self.or_run is not None
        joiner = " or " if linked else self.joiner_text if self.joiner else ", "
        if field_ == "print":
            self.print_yes = self.print_yes or text
        elif field_ == "color":
            self._color(values, text, linked)
        elif field_ in self.by_field:
            self.by_field[field_].add(values, joiner, text, bool(self.joiner))
            self.or_merged |= linked
        else:
            self.by_field[field_] = _Mention(field_, list(values), text)
            self.filters.append(self.by_field[field_])
        self.last_text, self.last_field = text, field_

    def _color(self, values: list[str], text: str, linked: bool) -> None:
        if linked and self.color_chain:
            head, *rest = self.color_chain
            for m in rest:
                head.add(m.values, ", ", m.text, True)
                self.filters.remove(m)
            head.add(values, " or ", text, True)
            self.color_chain = [head]
            self.or_merged = True
            return
        mention = next((m for m in self.filters if m.field == "color" and m.values == values), None)
        if mention is None:
            mention = _Mention("color", list(values), text)
            self.filters.append(mention)
        in_list = self.joiner == "SEP" and self.last_field == "color" and self.color_chain
        self.color_chain = [*self.color_chain, mention] if in_list else [mention]

    def _negate(self, item: _Item, field_: str, values: list[str]) -> None:
        scope = self.scope
        assert scope is not None
        text = self.folded[scope.start:item.end] if not scope.head else f"{scope.word} {self.text(item)}"
        if field_ == "print":
            self.print_no = self.print_no or text
        elif item.key == "anypattern" and self.lex.solid:
            self._positive("pattern", [self.lex.solid], text)  # "without pattern" = solid
        elif field_ in scope.mentions:
            scope.mentions[field_].add(values, self.joiner_text if self.joiner else " ", self.text(item), True)
        else:
            scope.mentions[field_] = _Mention(field_, list(values), text)
            self.excludes.append(scope.mentions[field_])
        scope.head = scope.head or ("category" if field_ in _HEADS else "modifier")
        scope.last_field = field_
        scope.dropping = False
        if scope.single:
            self._close_scope()

    def _word(self, word: str) -> None:
        self.unparsed.append(word)
        scope = self.scope
        if scope and (not scope.head or scope.dropping or self.joiner == "OR"):
            # "no ruffles", "no stripes or frills": negated, so neither a filter nor ranking text.
            scope.dropped.append(word)
            scope.dropping = True
            self.joiner = ""
            if scope.single:
                self._close_scope()
            return
        self._close_scope(resume=True)
        self.residual.append(word)

    def _close_scope(self, resume: bool = False) -> None:
        """End the open negation; a "with" phrase it interrupted goes on after an affix ("non-striped") or
        when a coordinator led out of the negation ("with no prints and red bows")."""
        scope, self.scope = self.scope, None
        if scope is None:
            return
        if scope.dropped:
            words = " ".join(scope.dropped)
            self.warnings.append(f"cannot exclude {words!r}: not in the vocabulary, ignored")
        self.in_with = scope.in_with and (scope.single or (resume and bool(self.joiner)))

    def _end_or_run(self) -> None:
        if self.or_run and not self.or_merged:
            alternatives = " or ".join(self.or_run)
            self.warnings.append(f"{alternatives!r}: alternatives of different kinds are not supported, "
                                 "all of them are required")
        self.or_run = None
        self.or_merged = False

    def plan(self, query: str) -> QueryPlan:
        self._close_scope()
        self._end_or_run()
        filters = _unique(self.filters)
        exclude = _unique(self.excludes)
        warnings = self.warnings + contradictions(filters, exclude)
        has_print = None
        if self.print_yes and self.print_no:
            warnings.append(f"contradiction: {self.print_yes!r} and {self.print_no!r}; nothing can match")
            # has_print holds one answer; the other side becomes a pattern clause so the plan stays honest.
            has_print = False
            filters.append(Clause(field="pattern", values=list(self.lex.printed), text=self.print_yes))
        elif self.print_yes or self.print_no:
            has_print = bool(self.print_yes)
            unfit = self.lex.unprinted if has_print else set(self.lex.printed)
            said = self.print_yes or self.print_no
            warnings += [f"contradiction: {c.text!r} and {said!r}; nothing can match"
                         for c in filters if c.field == "pattern" and set(c.values) <= unfit]
        return QueryPlan(query=query, filters=filters, exclude=exclude, has_print=has_print,
                         residual=" ".join(self.residual), unparsed=self.unparsed, warnings=warnings)


def _unique(mentions: list[_Mention]) -> list[Clause]:
    """Clauses in query order, a repeated identical clause ("red ... red") kept once."""
    seen: set[tuple[str, frozenset[str]]] = set()
    out = []
    for m in mentions:
        sig = (m.field, frozenset(m.values))
        if sig not in seen:
            seen.add(sig)
            out.append(Clause(field=m.field, values=m.values, text=m.text))
    return out


def contradictions(filters: list[Clause], exclude: list[Clause]) -> list[str]:
    """A filter every value of which is excluded can match nothing: "red and not red", "maroon, not red"."""
    out = []
    for f in filters:
        against = [e for e in exclude if e.field == f.field and set(e.values) & set(f.values)]
        if against and set(f.values) <= {v for e in against for v in e.values}:
            said = ", ".join(e.text for e in against)
            out.append(f"contradiction: {f.text!r} and {said!r}; nothing can match")
    return out


# Public API ----------------------------------------------------------------------------------------------


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def clean_query(text: str) -> str:
    """The query with control characters (NUL, newlines, escapes) turned into spaces and lone surrogates (from a
    JSON "\\ud800" escape) into "?": they mean nothing to search, PostgreSQL text cannot hold NUL, and a lone
    surrogate cannot be encoded at all. The search service cleans every query with it before parsing."""
    return _CONTROL.sub(" ", text).encode("utf-8", "replace").decode("utf-8")


def parse_query(text: str, vocab: Vocabulary | None = None) -> QueryPlan:
    """Parse a natural-language query into a plan; raises `QueryTooLong` beyond `MAX_QUERY_CHARS`."""
    if len(text) > MAX_QUERY_CHARS:
        raise QueryTooLong(len(text))
    lexicon = _lexicon(vocab or get_vocabulary())
    folded, matches = _scan(clean_query(text))
    parser = _Parser(lexicon, folded)
    for item in _lex(lexicon, matches):
        parser.feed(item)
    # The plan echoes the query as typed, but a lone surrogate would make it unserialisable.
    return parser.plan(text.encode("utf-8", "replace").decode("utf-8"))


def plan_summary(plan: QueryPlan) -> str:
    """One human-readable line for the CLI: filters, exclusions, print, ranking text and warnings."""
    parts = [f"{c.field}={'|'.join(c.values)}" for c in plan.filters]
    parts += [f"{c.field}!={'|'.join(c.values)}" for c in plan.exclude]
    if plan.has_print is not None:
        parts.append(f"has_print={'yes' if plan.has_print else 'no'}")
    if plan.residual:
        parts.append(f'text="{plan.residual}"')
    line = "  ".join(parts) or "(no constraints)"
    return f"{line}  [warnings: {'; '.join(plan.warnings)}]" if plan.warnings else line
