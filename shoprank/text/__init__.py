"""Query and title text: normalization shared with dbt, tokens for English and Chinese, spelling."""

from shoprank.text.normalize import normalize_query
from shoprank.text.segment import tokens
from shoprank.text.spelling import Speller

__all__ = ["Speller", "normalize_query", "tokens"]
