"""Query and title text: normalization and PII scrubbing shared with dbt, tokens for English and Chinese,
spelling."""

from shoprank.text.normalize import normalize_query
from shoprank.text.pii import scrub_pii
from shoprank.text.segment import tokens
from shoprank.text.spelling import Speller

__all__ = ["Speller", "normalize_query", "scrub_pii", "tokens"]
