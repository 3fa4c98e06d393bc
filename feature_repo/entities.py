"""Entities: who or what a feature describes, and the join keys that find it."""

from feast import Entity
from feast.value_type import ValueType

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING, description="A shopper.")
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING, description="A product.")
category = Entity(
    name="category",
    join_keys=["category_path"],
    value_type=ValueType.STRING,
    description='A leaf category, as its full path ("A > B > C").',
)
top_category = Entity(
    name="top_category",
    join_keys=["category_top"],
    value_type=ValueType.STRING,
    description="A top-level category (the first part of a category path).",
)
brand = Entity(
    name="brand",
    join_keys=["item_brand"],  # not "brand": Feast's request frames hold the catalog feature of that name
    value_type=ValueType.STRING,
    description="A brand, as the catalog spells it.",
)
query = Entity(
    name="query",
    join_keys=["query_norm"],
    value_type=ValueType.STRING,
    description="A search query, normalized (lower case, punctuation runs as single blanks).",
)
neighbour = Entity(
    name="neighbour",
    join_keys=["neighbour_item_id"],
    value_type=ValueType.STRING,
    description="The second item of an item x item pair.",
)
