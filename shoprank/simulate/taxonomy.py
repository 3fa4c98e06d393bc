"""The shop's fixed vocabulary: category tree, leaf nouns and synonyms, brands, attributes, colors.

A leaf is written ``"Leaf Name|noun|synonym[,synonym]|median price|unit:size,size"`` (the size
part may be empty). Units ``size`` and ``eu`` go before the value ("Size M", "EU 42"), every
other unit after it ("750 ml").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

TREE: dict[str, dict[str, tuple[str, ...]]] = {
    "Electronics": {
        "Computers": (
            "Laptops|laptop|notebook|850|in:13,14,15,16",
            "Monitors|monitor|display,screen|230|in:24,27,32",
            "Keyboards|keyboard|keypad|60|",
            "Computer Mice|mouse|computer mouse|30|",
        ),
        "TV & Audio": (
            "Televisions|tv|television|650|in:43,55,65,75",
            "Headphones|headphones|headset,earphones|110|",
            "Speakers|speaker|loudspeaker|90|w:10,20,40",
            "Soundbars|soundbar|sound bar|240|",
        ),
        "Phones & Accessories": (
            "Smartphones|smartphone|cell phone,mobile phone|600|gb:64,128,256",
            "Phone Cases|phone case|phone cover|20|",
            "Chargers|charger|power adapter|25|w:20,30,65",
            "Power Banks|power bank|portable charger|35|mah:10000,20000",
        ),
        "Cameras": (
            "Digital Cameras|camera|digital camera|550|mp:20,24,45",
            "Action Cameras|action camera|action cam|280|",
            "Tripods|tripod|camera stand|45|cm:120,150,170",
        ),
    },
    "Home & Kitchen": {
        "Kitchen Appliances": (
            "Coffee Makers|coffee maker|coffee machine|110|",
            "Blenders|blender|mixer|70|w:600,1000,1200",
            "Toasters|toaster|bread toaster|40|",
            "Kettles|kettle|electric kettle|35|l:1,1.5,1.7",
            "Air Fryers|air fryer|hot air fryer|95|l:4,5.5,8",
        ),
        "Cookware": (
            "Frying Pans|frying pan|skillet|40|cm:24,28,32",
            "Pots|pot|saucepan|45|l:2,3,5",
            "Knife Sets|knife set|kitchen knives|80|pcs:5,8,12",
            "Water Bottles|water bottle|drinking bottle,flask|20|ml:500,750,1000",
        ),
        "Furniture": (
            "Sofas|sofa|couch|750|cm:180,200,220",
            "Office Chairs|office chair|desk chair|180|",
            "Desks|desk|writing desk|220|cm:120,140,160",
            "Bookshelves|bookshelf|bookcase|120|",
        ),
        "Bedding": (
            "Pillows|pillow|bed pillow|30|",
            "Duvets|duvet|comforter|80|cm:135,155,200",
            "Bed Sheets|bed sheet|sheet set|35|",
        ),
    },
    "Clothing": {
        "Men": (
            "Shirts|shirt|button down|35|size:S,M,L,XL",
            "Jeans|jeans|denim pants|55|size:W30,W32,W34,W36",
            "Jackets|jacket|coat|110|size:S,M,L,XL",
        ),
        "Women": (
            "Dresses|dress|gown|60|size:XS,S,M,L",
            "Blouses|blouse|top|35|size:XS,S,M,L",
            "Skirts|skirt|midi skirt|40|size:XS,S,M,L",
        ),
        "Shoes": (
            "Sneakers|sneakers|trainers|85|eu:38,40,42,44",
            "Boots|boots|ankle boots|120|eu:37,39,41,43",
            "Sandals|sandals|flip flops|40|eu:37,39,41,43",
        ),
        "Accessories": (
            "Backpacks|backpack|rucksack|55|l:20,30",
            "Sunglasses|sunglasses|shades|70|",
            "Watches|watch|wristwatch|150|mm:38,42",
        ),
    },
    "Sports & Outdoors": {
        "Fitness": (
            "Yoga Mats|yoga mat|exercise mat|30|mm:4,6,8",
            "Dumbbells|dumbbell|hand weight|40|kg:2,5,10",
            "Treadmills|treadmill|running machine|900|",
            "Resistance Bands|resistance band|exercise band|20|",
        ),
        "Camping": (
            "Tents|tent|camping tent|160|person:2,3,4",
            "Sleeping Bags|sleeping bag|sleeping sack|70|",
            "Camping Stoves|camping stove|camp stove|50|",
            "Headlamps|headlamp|head torch|25|lm:300,600",
        ),
        "Cycling": (
            "Bikes|bike|bicycle|650|in:26,27.5,29",
            "Bike Helmets|bike helmet|cycling helmet|60|size:S,M,L",
            "Bike Lights|bike light|bicycle light|30|lm:400,800",
        ),
        "Team Sports": (
            "Footballs|football|soccer ball|25|size:4,5",
            "Basketballs|basketball|hoop ball|30|size:6,7",
            "Tennis Rackets|tennis racket|tennis racquet|90|",
        ),
    },
    "Beauty": {
        "Skincare": (
            "Moisturizers|moisturizer|face cream|25|ml:50,100",
            "Sunscreens|sunscreen|sunblock|15|ml:50,100",
            "Face Serums|serum|face serum|30|ml:30",
            "Cleansers|cleanser|face wash|12|ml:150,250",
        ),
        "Hair Care": (
            "Shampoos|shampoo|hair wash|9|ml:250,500",
            "Hair Dryers|hair dryer|blow dryer|55|w:1800,2200",
            "Hair Straighteners|straightener|flat iron|45|",
        ),
        "Makeup": (
            "Lipsticks|lipstick|lip color|14|",
            "Mascaras|mascara|lash mascara|12|",
            "Foundations|foundation|base makeup|22|ml:30",
        ),
        "Fragrance": (
            "Perfumes|perfume|fragrance|65|ml:30,50,100",
            "Colognes|cologne|eau de toilette|50|ml:50,100",
        ),
    },
    "Toys": {
        "Building & Puzzles": (
            "Building Blocks|building blocks|brick set|45|pcs:250,500,1000",
            "Puzzles|puzzle|jigsaw|18|pcs:500,1000",
        ),
        "Dolls & Figures": (
            "Dolls|doll|fashion doll|25|",
            "Action Figures|action figure|figurine|20|cm:15,30",
            "Plush Toys|plush toy|stuffed animal|18|cm:20,40",
        ),
        "Games": (
            "Board Games|board game|tabletop game|35|",
            "Card Games|card game|playing cards|12|",
        ),
        "Outdoor Play": (
            "Scooters|scooter|kick scooter|70|",
            "Water Guns|water gun|water pistol|15|",
            "Kites|kite|stunt kite|25|",
        ),
    },
    "Tools & Garden": {
        "Power Tools": (
            "Drills|drill|power drill|90|v:12,18",
            "Circular Saws|circular saw|power saw|120|",
            "Sanders|sander|sanding machine|60|",
        ),
        "Hand Tools": (
            "Hammers|hammer|mallet|20|",
            "Screwdriver Sets|screwdriver set|screwdrivers|25|pcs:10,24",
            "Wrenches|wrench|spanner|18|",
        ),
        "Garden": (
            "Lawn Mowers|lawn mower|grass cutter|300|",
            "Garden Hoses|garden hose|hosepipe|35|m:15,25,30",
            "Planters|planter|flower pot|22|cm:20,30,40",
            "Pruning Shears|pruning shears|secateurs|20|",
        ),
    },
    "Grocery": {
        "Beverages": (
            "Coffee Beans|coffee beans|whole bean coffee|14|g:250,500,1000",
            "Tea|tea|tea bags|6|pcs:20,50,100",
            "Sparkling Water|sparkling water|soda water|5|l:1,1.5",
        ),
        "Snacks": (
            "Chips|chips|crisps|3|g:150,200",
            "Chocolate|chocolate bar|candy bar|3|g:100,200",
            "Nuts|mixed nuts|trail mix|8|g:200,500",
        ),
        "Pantry": (
            "Pasta|pasta|spaghetti|3|g:500,1000",
            "Olive Oil|olive oil|extra virgin oil|10|ml:500,750,1000",
            "Rice|rice|white rice|5|kg:1,2,5",
        ),
        "Breakfast": (
            "Cereals|cereal|breakfast cereal|5|g:375,500",
            "Granola|granola|muesli|6|g:400,750",
        ),
    },
}

# top category -> (brands, attributes (adjectives and materials), colors (or flavors, shades))
STYLE: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "Electronics": (
        ("Voltix", "Lumetra", "Acme", "Sonarix", "Pixelon"),
        ("Wireless", "Portable", "Compact", "Smart", "Pro", "Ultra Slim"),
        ("Black", "White", "Silver", "Blue", "Red"),
    ),
    "Home & Kitchen": (
        ("Hearthly", "Acme", "Casavia", "Kitchora", "Nordhem"),
        ("Stainless Steel", "Ceramic", "Wooden", "Nonstick", "Modern", "Classic"),
        ("White", "Black", "Grey", "Beige", "Blue", "Green"),
    ),
    "Clothing": (
        ("Urbanthread", "Mavenwear", "Northloom", "Solene", "Kestrel"),
        ("Cotton", "Slim Fit", "Classic", "Linen", "Waterproof", "Wool"),
        ("Black", "Navy", "White", "Red", "Olive", "Grey"),
    ),
    "Sports & Outdoors": (
        ("Trailforge", "Peakline", "Stridex", "Kestrel", "Ridgeway"),
        ("Lightweight", "Waterproof", "Foldable", "Professional", "Ultralight", "Adjustable"),
        ("Black", "Blue", "Red", "Green", "Orange"),
    ),
    "Beauty": (
        ("Veloura", "Glowe", "Purelle", "Mirabel"),
        ("Organic", "Hydrating", "Vegan", "Fragrance Free", "Long Lasting", "Natural"),
        ("Rose", "Nude", "Coral", "Lavender", "Fresh"),
    ),
    "Toys": (
        ("Brickton", "Jollyo", "Wunderkind", "Playmaker"),
        ("Classic", "Educational", "Deluxe", "Mini", "Giant", "Wooden"),
        ("Red", "Blue", "Yellow", "Pink", "Multicolor"),
    ),
    "Tools & Garden": (
        ("Forgemaster", "Ironclad", "Greenthumb", "Torqen"),
        ("Cordless", "Heavy Duty", "Compact", "Professional", "Ergonomic", "Steel"),
        ("Yellow", "Red", "Black", "Green", "Orange"),
    ),
    "Grocery": (
        ("Harvest Lane", "Nonna", "Goldcrest", "Morning Mill"),
        ("Organic", "Whole Grain", "Sugar Free", "Roasted", "Italian", "Premium"),
        ("Vanilla", "Chocolate", "Salted", "Honey", "Original"),
    ),
}

_PREFIX_UNITS = {"size": "Size", "eu": "EU"}


@dataclass(frozen=True)
class Leaf:
    """A leaf category: its path, the noun its items are titled with, synonyms, prices, sizes."""

    top: str
    sub: str
    name: str
    noun: str
    synonyms: tuple[str, ...]
    median_price: float
    sizes: tuple[str, ...]

    @property
    def path(self) -> str:
        """The category path, ``"Top > Sub > Leaf"``."""
        return f"{self.top} > {self.sub} > {self.name}"


def parse_leaf(top: str, sub: str, text: str) -> Leaf:
    """Parse one leaf line of ``TREE`` (see the module docstring for the format)."""
    name, noun, synonyms, price, sizes = text.split("|")
    return Leaf(top, sub, name, noun, tuple(synonyms.split(",")), float(price), _sizes(sizes))


def _sizes(text: str) -> tuple[str, ...]:
    if not text:
        return ()
    unit, values = text.split(":")
    if unit in _PREFIX_UNITS:
        return tuple(f"{_PREFIX_UNITS[unit]} {v}" for v in values.split(","))
    shown = {"person": "-Person", "mah": " mAh", "mp": " MP", "gb": " GB", "w": " W", "v": " V", "lm": " lm"}
    return tuple(f"{v}{shown.get(unit, ' ' + unit)}" for v in values.split(","))


@cache
def leaves() -> tuple[Leaf, ...]:
    """Every leaf of ``TREE``, in tree order."""
    return tuple(
        parse_leaf(top, sub, line) for top, subs in TREE.items() for sub, lines in subs.items() for line in lines
    )


def tops() -> tuple[str, ...]:
    """Top categories in tree order."""
    return tuple(TREE)


def display(term: str) -> str:
    """Title-case a lower-case noun for a title ("water bottle" -> "Water Bottle", "tv" -> "TV")."""
    return " ".join(w.upper() if len(w) <= 2 else w.capitalize() for w in term.split())
