{#- Query and title text as it is grouped and matched: the rule of shoprank.text.normalize, where
    every step is documented (shoprank/text/normalize.py); tests/code/test_text.py checks that this
    macro and the Python function agree on a shared table of cases.
      0. e-mail addresses and phone numbers replaced (scrub_pii);
      1. NFC, the compatibility characters that matter mapped as NFKC maps them (fullwidth ASCII,
         ligatures, super/subscript digits; vulgar fractions -> ' N/D'; ⁄ ∕ -> /, ′ ″ -> ' ";
         İ -> I, Σ -> σ), lower case;
      2. a quote after a digit is inch ("), foot (' not followed by s);
      3. runs of characters other than letters, marks, numbers become one blank; . and / stay only
         between digits; .5 -> 0.5;
      4. digits split from other characters (18v -> 18 v);
      5. unit words after a number canonical (text_units);
      6. decimals lose trailing zeros; fractions N/D (D = 2, 4, ..., 64; 0 < N < D) become decimals,
         with the whole number before them (1-1/2 -> 1.5);
      7. blanks collapsed and trimmed; empty -> null. -#}
{% macro normalize_query(expression) -%}
    {%- set folded = text_fold(scrub_pii(expression)) -%}
    {%- set ns = namespace(sql="' ' || " ~ folded ~ " || ' '") -%}
    {%- for pattern, replacement in text_steps() -%}
        {%- set ns.sql = regexp_replace_all(ns.sql, pattern, replacement) -%}
    {%- endfor -%}
    {#- without digits, steps 2 to 6 come down to step 3 -#}
    {%- set words = "case when regexp_extract(" ~ folded ~ ", '[0-9]', 0) = '' then "
        ~ regexp_replace_all(folded, '[^\\p{L}\\p{M}\\p{N}]+', ' ') ~ " else " ~ ns.sql ~ " end" -%}
    nullif(trim({{ regexp_replace_all(text_words(words), ' +', ' ') }}), '')
{%- endmacro %}

{#- Canonical form of each unit family -> its other spellings; the same table as shoprank.text.normalize.UNITS. -#}
{% macro text_units() -%}
    {{ return({
        'in': ['inch', 'inches'],
        'ft': ['foot', 'feet'],
        'yd': ['yds', 'yard', 'yards'],
        'lb': ['lbs', 'pound', 'pounds'],
        'oz': ['ounce', 'ounces'],
        'gal': ['gallon', 'gallons'],
        'qt': ['quart', 'quarts'],
        'volt': ['v', 'volts'],
        'watt': ['w', 'watts'],
        'amp': ['a', 'amps', 'ampere', 'amperes'],
        'mm': ['millimeter', 'millimeters', 'millimetre', 'millimetres'],
        'cm': ['centimeter', 'centimeters', 'centimetre', 'centimetres'],
        'm': ['meter', 'meters', 'metre', 'metres'],
        'ml': ['milliliter', 'milliliters', 'millilitre', 'millilitres'],
        'l': ['liter', 'liters', 'litre', 'litres'],
        'kg': ['kgs', 'kilogram', 'kilograms'],
        'g': ['gram', 'grams'],
        'pack': ['pk', 'pks', 'packs'],
        'piece': ['pc', 'pcs', 'pieces'],
    }) }}
{%- endmacro %}

{#- Step 1: NFC, the compatibility characters (fullwidth U+FF01-U+FF5E is U+0021-U+007E + 0xFEE0),
    lower case. -#}
{% macro text_fold(expression) -%}
    {%- set fullwidth = namespace(source='', target='') -%}
    {%- for code in range(65281, 65375) -%}
        {%- set fullwidth.source = fullwidth.source ~ '%c' | format(code) -%}
        {%- set fullwidth.target = fullwidth.target ~ '%c' | format(code - 65248) -%}
    {%- endfor -%}
    {%- set source = fullwidth.source ~ '⁰¹²³⁴⁵⁶⁷⁸⁹₀₁₂₃₄₅₆₇₈₉⁄∕′″İΣ' -%}
    {%- set target = fullwidth.target ~ '01234567890123456789//\'"Iσ' -%}
    {%- set expansions = [
        ('ﬀ', 'ff'), ('ﬁ', 'fi'), ('ﬂ', 'fl'), ('ﬃ', 'ffi'), ('ﬄ', 'ffl'), ('ﬅ', 'st'), ('ﬆ', 'st'),
        ('¼', ' 1/4'), ('½', ' 1/2'), ('¾', ' 3/4'), ('⅐', ' 1/7'), ('⅑', ' 1/9'), ('⅒', ' 1/10'),
        ('⅓', ' 1/3'), ('⅔', ' 2/3'), ('⅕', ' 1/5'), ('⅖', ' 2/5'), ('⅗', ' 3/5'), ('⅘', ' 4/5'),
        ('⅙', ' 1/6'), ('⅚', ' 5/6'), ('⅛', ' 1/8'), ('⅜', ' 3/8'), ('⅝', ' 5/8'), ('⅞', ' 7/8'),
        ('↉', ' 0/3'),
    ] -%}
    {%- set ns = namespace(sql="translate(" ~ text_nfc(expression) ~ ", " ~ sql_string(source) ~ ", "
        ~ sql_string(target) ~ ")") -%}
    {%- for character, expansion in expansions -%}
        {%- set ns.sql = "replace(" ~ ns.sql ~ ", '" ~ character ~ "', '" ~ expansion ~ "')" -%}
    {%- endfor -%}
    case when {{ text_is_ascii(expression) }} then lower({{ expression }}) else lower({{ ns.sql }}) end
{%- endmacro %}

{#- Steps 2 to 6 as (regular expression, replacement) on the text padded with blanks; from step 4
    on, every word sits between two blanks of its own. The last two steps prepare text_word: a whole
    number and the fraction after it become one word W+N/D, a unit word after a number +word. -#}
{% macro text_steps() -%}
    {%- set one, two = text_group(1), text_group(2) -%}
    {%- set steps = [
        ('([0-9])"', one ~ ' in '),
        ("([0-9])'([^s])", one ~ ' ft ' ~ two),
        ('[^\\p{L}\\p{M}\\p{N}./]+', ' '),
        ('[./]{2,}', ' '),
        (' \\.([0-9])', ' 0.' ~ one),
        ('([^0-9])[./]', one ~ ' '),
        ('[./]([^0-9])', ' ' ~ one),
        ('([0-9])([^0-9 ./])', one ~ ' ' ~ two),
        ('([^0-9 ./])([0-9])', one ~ ' ' ~ two),
        (' +', '  '),
        (' ([0-9]+\\.[0-9]*[1-9])0+ ', ' ' ~ one ~ ' '),
        (' ([0-9]+)\\.0+ ', ' ' ~ one ~ ' '),
        (' ([0-9]{1,6})  ([0-9]+/[0-9]+) ', ' ' ~ one ~ '+' ~ two ~ ' '),
    ] -%}
    {%- set spellings = [] -%}
    {%- for unit, others in text_units().items() -%}
        {%- do spellings.extend(others) -%}
    {%- endfor -%}
    {%- do steps.append(('([0-9])  (' ~ spellings | join('|') ~ ') ', one ~ '  +' ~ two ~ ' ')) -%}
    {{ return(steps) }}
{%- endmacro %}

{#- Steps 5 and 6 on one word prepared by text_steps: +word canonical; W+N/D or
    N/D as the decimal W + N/D when D is 2, 4, ..., 64 and 0 < N < D, else as it is. -#}
{% macro text_word(word) -%}
    {%- set whole = "coalesce(cast(nullif(regexp_extract(" ~ word ~ ", '^([0-9]+)[+]', 1), '') as double), 0)" -%}
    {%- set numerator = "cast(regexp_extract(" ~ word ~ ", '([0-9]+)/[0-9]+$', 1) as double)" -%}
    {%- set denominator = "cast(regexp_extract(" ~ word ~ ", '/([0-9]+)$', 1) as double)" -%}
    case
        when {{ word }} like '+%' then case substr({{ word }}, 2)
            {%- for unit, spellings in text_units().items() %}{% for spelling in spellings %}
            when '{{ spelling }}' then '{{ unit }}'
            {%- endfor %}{% endfor %}
        end
        when {{ word }} not like '%/%' then {{ word }}
        when regexp_extract({{ word }}, '^([0-9]+[+])?[0-9]+/[0-9]+$', 0) = '' then {{ word }}
        when {{ denominator }} in (2, 4, 8, 16, 32, 64) and {{ numerator }} > 0 and {{ numerator }} < {{ denominator }}
            then cast({{ whole }} + {{ numerator }} / {{ denominator }} as {{ dbt.type_string() }})
        else replace({{ word }}, '+', ' ')
    end
{%- endmacro %}

{#- Dialect differences below: DuckDB (embedded, tested) and default (Spark, the distributed
    profile; written to its documentation, not run by the tests).
    Every blank-separated word of a text through text_word. -#}
{% macro text_words(expression) -%}
    {{ return(adapter.dispatch('text_words', 'shoprank')(expression)) }}
{%- endmacro %}

{% macro default__text_words(expression) -%}
    array_join(transform(split({{ expression }}, ' '), text_word -> {{ text_word('text_word') }}), ' ')
{%- endmacro %}

{% macro duckdb__text_words(expression) -%}
    array_to_string(list_transform(string_split({{ expression }}, ' '), lambda text_word: {{ text_word('text_word') }}), ' ')
{%- endmacro %}

{#- Whether a text is all ASCII (then step 1 is lower case only). -#}
{% macro text_is_ascii(expression) -%}
    {{ return(adapter.dispatch('text_is_ascii', 'shoprank')(expression)) }}
{%- endmacro %}

{% macro default__text_is_ascii(expression) -%}
    octet_length({{ expression }}) = length({{ expression }})
{%- endmacro %}

{% macro duckdb__text_is_ascii(expression) -%}
    strlen({{ expression }}) = length({{ expression }})
{%- endmacro %}

{#- Unicode NFC (Spark has no function for it: its text is taken as NFC already). -#}
{% macro text_nfc(expression) -%}
    {{ return(adapter.dispatch('text_nfc', 'shoprank')(expression)) }}
{%- endmacro %}

{% macro default__text_nfc(expression) -%}
    {{ expression }}
{%- endmacro %}

{% macro duckdb__text_nfc(expression) -%}
    nfc_normalize({{ expression }})
{%- endmacro %}

{#- A regular expression replacement's reference to group n. -#}
{% macro text_group(n) -%}
    {{ return(adapter.dispatch('text_group', 'shoprank')(n)) }}
{%- endmacro %}

{% macro default__text_group(n) -%}
    {{ return('$' ~ n) }}
{%- endmacro %}

{% macro duckdb__text_group(n) -%}
    {{ return('\\' ~ n) }}
{%- endmacro %}
