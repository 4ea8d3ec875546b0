//! Word lists by category (nouns, adjectives, adverbs, time words) for the built-in corpus.
//!
//! Part of the built-in demo corpus (a toy for `slm quickstart`, not a benchmark). Lists hold
//! base forms only (plurals come from `morphology`) and simple words a 3-4-year-old knows.
//! Verbs live in `verbs`, names and pets in `characters`.

/// How an animal gets about; picks its movement verbs and the places it can go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Moves {
    #[default]
    Walks,
    Hops,
    Flies,
    Swims,
    Crawls,
    Waddles,
}

/// Where an animal is met: a bit set of the `HOME_*` flags.
pub type Homes = u8;
/// Gardens, parks, ponds, backyards: seen on any outdoor day.
pub const HOME_LOCAL: Homes = 1;
/// Seen at the zoo.
pub const HOME_ZOO: Homes = 2;
/// Seen on a farm.
pub const HOME_FARM: Homes = 4;
/// Seen at the sea or in an aquarium.
pub const HOME_SEA: Homes = 8;
/// Seen in the woods.
pub const HOME_FOREST: Homes = 16;
/// Seen on a beach.
pub const HOME_SHORE: Homes = 32;

/// One animal: its name, how it moves, the sound it makes ("" if none), where it lives.
#[derive(Clone, Copy, Debug, Default)]
pub struct Animal {
    pub name: &'static str,
    pub moves: Moves,
    pub sound: &'static str,
    pub homes: Homes,
}

const fn an(name: &'static str, moves: Moves, sound: &'static str, homes: Homes) -> Animal {
    Animal {
        name,
        moves,
        sound,
        homes,
    }
}

use Moves::{Crawls, Flies, Hops, Swims, Waddles, Walks};
const L: Homes = HOME_LOCAL;
const Z: Homes = HOME_ZOO;
const FA: Homes = HOME_FARM;
const SE: Homes = HOME_SEA;
const FO: Homes = HOME_FOREST;
const SH: Homes = HOME_SHORE;

/// Animals, with movement, sound and home.
pub const ANIMALS: &[Animal] = &[
    an("bird", Flies, "tweet", L | FO),
    an("robin", Flies, "tweet", L),
    an("sparrow", Flies, "chirp", L),
    an("bluebird", Flies, "tweet", L),
    an("crow", Flies, "caw", L | FA),
    an("pigeon", Flies, "coo", L),
    an("owl", Flies, "hoot", L | FO),
    an("woodpecker", Flies, "", FO),
    an("hummingbird", Flies, "", L),
    an("duck", Waddles, "quack", L | FA),
    an("duckling", Waddles, "peep", L | FA),
    an("goose", Waddles, "honk", L | FA),
    an("swan", Swims, "", L),
    an("squirrel", Walks, "", L | FO),
    an("chipmunk", Walks, "", L | FO),
    an("rabbit", Hops, "", L | FO | FA),
    an("bunny", Hops, "", L | FA),
    an("frog", Hops, "ribbit", L),
    an("toad", Hops, "croak", L),
    an("mouse", Walks, "squeak", L | FA),
    an("hedgehog", Walks, "", L | FO),
    an("fox", Walks, "", L | FO),
    an("deer", Walks, "", FO),
    an("raccoon", Walks, "", L | FO),
    an("skunk", Walks, "", FO),
    an("butterfly", Flies, "", L),
    an("bee", Flies, "buzz", L | FA),
    an("ladybug", Crawls, "", L),
    an("dragonfly", Flies, "", L),
    an("firefly", Flies, "", L),
    an("moth", Flies, "", L),
    an("snail", Crawls, "", L),
    an("worm", Crawls, "", L),
    an("caterpillar", Crawls, "", L),
    an("ant", Crawls, "", L),
    an("spider", Crawls, "", L),
    an("beetle", Crawls, "", L | FO),
    an("grasshopper", Hops, "", L),
    an("cricket", Hops, "chirp", L),
    an("lizard", Crawls, "", L),
    an("turtle", Crawls, "", L | SE | SH),
    an("tadpole", Swims, "", L),
    an("fish", Swims, "", L | SE),
    an("badger", Walks, "", FO),
    an("moose", Walks, "", FO),
    an("beaver", Swims, "", FO),
    an("porcupine", Walks, "", FO),
    an("bear", Walks, "growl", FO | Z),
    an("wolf", Walks, "howl", FO),
    an("lion", Walks, "roar", Z),
    an("tiger", Walks, "roar", Z),
    an("elephant", Walks, "", Z),
    an("giraffe", Walks, "", Z),
    an("zebra", Walks, "", Z),
    an("monkey", Walks, "ooh ooh", Z),
    an("gorilla", Walks, "", Z),
    an("hippo", Walks, "", Z),
    an("rhino", Walks, "", Z),
    an("panda", Walks, "", Z),
    an("koala", Walks, "", Z),
    an("kangaroo", Hops, "", Z),
    an("camel", Walks, "", Z),
    an("penguin", Waddles, "", Z | SE),
    an("flamingo", Walks, "", Z),
    an("peacock", Walks, "", Z),
    an("parrot", Flies, "squawk", Z),
    an("crocodile", Swims, "", Z),
    an("ostrich", Walks, "", Z),
    an("cheetah", Walks, "", Z),
    an("leopard", Walks, "", Z),
    an("sloth", Crawls, "", Z),
    an("otter", Swims, "", Z | SE),
    an("seal", Swims, "", Z | SE | SH),
    an("cow", Walks, "moo", FA),
    an("calf", Walks, "moo", FA),
    an("pig", Walks, "oink", FA),
    an("piglet", Walks, "oink", FA),
    an("sheep", Walks, "baa", FA),
    an("lamb", Walks, "baa", FA),
    an("goat", Walks, "maa", FA),
    an("horse", Walks, "neigh", FA),
    an("pony", Walks, "neigh", FA),
    an("donkey", Walks, "hee-haw", FA),
    an("hen", Walks, "cluck", FA),
    an("chick", Walks, "peep", FA),
    an("rooster", Walks, "cock-a-doodle-doo", FA),
    an("turkey", Walks, "gobble", FA),
    an("llama", Walks, "", FA),
    an("crab", Crawls, "", SE | SH),
    an("seagull", Flies, "squawk", SE | SH),
    an("pelican", Flies, "", SE | SH),
    an("starfish", Crawls, "", SE | SH),
    an("jellyfish", Swims, "", SE | SH),
    an("dolphin", Swims, "", SE),
    an("whale", Swims, "", SE),
    an("shark", Swims, "", SE),
    an("octopus", Swims, "", SE),
    an("clam", Crawls, "", SE | SH),
];

/// Small household things (clutter found while searching, things in a room).
pub const HOUSEHOLD: &[&str] = &[
    "cup",
    "plate",
    "spoon",
    "fork",
    "bowl",
    "pot",
    "pan",
    "lamp",
    "clock",
    "mirror",
    "pillow",
    "blanket",
    "towel",
    "brush",
    "comb",
    "key",
    "basket",
    "bucket",
    "broom",
    "jar",
    "bottle",
    "candle",
    "pencil",
    "crayon",
    "button",
    "sock",
    "marble",
    "sticker",
    "ribbon",
    "coin",
    "envelope",
    "map",
    "flashlight",
    "cracker",
    "raisin",
    "paper clip",
    "rubber band",
    "napkin",
    "cookie cutter",
    "shoelace",
    "old letter",
    "puzzle piece",
    "birthday card",
    "paintbrush",
    "teacup",
    "thimble",
    "mitten",
    "glue stick",
    "bead",
    "tissue",
];

/// Furniture and parts of a home: where lost things hide.
pub const FURNITURE: &[&str] = &[
    "bed",
    "couch",
    "table",
    "chair",
    "desk",
    "shelf",
    "dresser",
    "closet",
    "cupboard",
    "bookcase",
    "toy box",
    "laundry basket",
    "rug",
    "curtain",
    "piano",
    "stairs",
    "door",
    "window seat",
    "bathtub",
    "sink",
    "stove",
    "fridge",
    "washing machine",
    "doghouse",
    "rocking chair",
    "bench",
];

/// Toys: a hero's special object is one of these.
pub const TOYS: &[&str] = &[
    "ball",
    "kite",
    "teddy bear",
    "doll",
    "toy car",
    "toy train",
    "robot",
    "yo-yo",
    "drum",
    "whistle",
    "wagon",
    "toy boat",
    "spinning top",
    "puppet",
    "stuffed bunny",
    "toy dinosaur",
    "toy rocket",
    "music box",
    "rubber duck",
    "jump rope",
    "toy truck",
    "rag doll",
    "harmonica",
    "toy airplane",
    "snow globe",
    "magic wand",
    "toy horse",
    "kaleidoscope",
    "pinwheel",
    "xylophone",
];

/// Play places where a story's action happens.
pub const PLAY_PLACES: &[&str] = &[
    "park",
    "garden",
    "backyard",
    "playground",
    "meadow",
    "field",
    "schoolyard",
    "orchard",
];

/// Places visited on errands or walks.
pub const TOWN_PLACES: &[&str] = &[
    "bakery",
    "market",
    "library",
    "post office",
    "toy shop",
    "pet shop",
    "flower shop",
    "school",
    "ice cream shop",
    "candy store",
    "fire station",
    "bookstore",
    "swimming pool",
    "town square",
    "train station",
    "doctor's office",
    "museum",
    "farmers market",
];

/// Homes for an opening line ("in a little house by the sea").
pub const HOMES: &[&str] = &[
    "a little house by the sea",
    "a small town",
    "a quiet village",
    "a big city",
    "a yellow house near the woods",
    "a cozy cottage",
    "a tall apartment building",
    "a farmhouse on a hill",
    "a blue house on a busy street",
    "a sleepy little town",
    "a house with a red door",
    "a log cabin in the mountains",
];

/// Food you count: singular nouns (plural made by `morphology`).
pub const FOODS: &[&str] = &[
    "apple",
    "banana",
    "orange",
    "pear",
    "peach",
    "plum",
    "grape",
    "cherry",
    "strawberry",
    "blueberry",
    "raspberry",
    "lemon",
    "carrot",
    "pea",
    "bean",
    "potato",
    "tomato",
    "cucumber",
    "pumpkin",
    "cookie",
    "cupcake",
    "muffin",
    "pancake",
    "waffle",
    "sandwich",
    "pie",
    "pretzel",
    "egg",
    "nut",
    "donut",
    "lollipop",
    "bun",
    "mango",
    "kiwi",
    "coconut",
    "pineapple",
    "watermelon",
    "pickle",
    "meatball",
    "dumpling",
    "taco",
    "cracker",
    "gingerbread man",
    "jelly bean",
    "marshmallow",
    "radish",
    "apricot",
    "almond",
    "peanut",
    "cinnamon roll",
];

/// Food you do not count: soup, rice, milk.
pub const MASS_FOODS: &[&str] = &[
    "soup",
    "rice",
    "bread",
    "cheese",
    "honey",
    "pasta",
    "porridge",
    "jam",
    "yogurt",
    "popcorn",
    "ice cream",
    "cereal",
    "oatmeal",
    "toast",
    "pizza",
    "salad",
    "spaghetti",
    "cake",
    "candy",
    "chocolate",
    "corn",
    "stew",
    "pudding",
    "jelly",
    "noodle soup",
    "mashed potatoes",
    "applesauce",
    "broccoli",
    "spinach",
    "fish sticks",
    "peanut butter",
    "butter",
    "cornbread",
    "fruit salad",
    "scrambled eggs",
];

/// Drinks.
pub const DRINKS: &[&str] = &[
    "milk",
    "juice",
    "lemonade",
    "water",
    "hot cocoa",
    "tea",
    "orange juice",
    "apple juice",
    "chocolate milk",
    "warm milk",
    "a fruit smoothie",
];

/// Meals of the day.
pub const MEALS: &[&str] = &["breakfast", "lunch", "dinner", "snack time", "supper"];

/// Big things outdoors (landmarks to walk past).
pub const BIG_NATURE: &[&str] = &[
    "tree",
    "bush",
    "rock",
    "pond",
    "hill",
    "log",
    "stream",
    "puddle",
    "flower bed",
    "fence",
    "hedge",
    "stone wall",
    "river",
    "waterfall",
    "tree stump",
    "haystack",
    "sand dune",
    "cave",
    "bridge",
    "garden path",
    "apple tree",
    "pine tree",
    "oak tree",
    "willow tree",
    "maple tree",
    "birch tree",
    "cherry tree",
    "palm tree",
];

/// Small things found outdoors and put in a pocket.
pub const SMALL_NATURE: &[&str] = &[
    "pebble",
    "shell",
    "feather",
    "acorn",
    "pinecone",
    "leaf",
    "stick",
    "petal",
    "seed",
    "four-leaf clover",
    "smooth stone",
    "snail shell",
    "twig",
    "chestnut",
    "bird's nest",
    "seashell",
    "mushroom",
];

/// Flowers.
pub const FLOWERS: &[&str] = &[
    "rose",
    "tulip",
    "sunflower",
    "dandelion",
    "violet",
    "bluebell",
    "buttercup",
    "daffodil",
    "marigold",
    "lavender",
    "clover",
    "orchid",
    "pansy",
    "lilac",
];

/// Things in the sky.
pub const SKY: &[&str] = &["cloud", "star", "moon", "rainbow", "sun", "kite", "balloon"];

/// Weather adjectives ("It was a windy day").
pub const WEATHER: &[&str] = &[
    "sunny", "rainy", "windy", "cloudy", "snowy", "foggy", "stormy", "warm", "cold", "hot", "cool",
    "chilly", "breezy", "bright", "gray", "misty", "frosty",
];

/// Parts of the body.
pub const BODY: &[&str] = &[
    "head", "hand", "foot", "toe", "finger", "arm", "leg", "knee", "elbow", "nose", "ear", "cheek",
    "chin", "tummy", "back", "shoulder", "neck", "thumb", "nose", "forehead",
];

/// Family and people around a child.
pub const FAMILY: &[&str] = &[
    "mom",
    "dad",
    "grandma",
    "grandpa",
    "brother",
    "sister",
    "baby brother",
    "baby sister",
    "aunt",
    "uncle",
    "cousin",
    "neighbor",
    "teacher",
    "grandparents",
    "family",
    "big sister",
    "big brother",
];

/// Clothes (singular or plural, always used after "his/her").
pub const CLOTHES: &[&str] = &[
    "hat", "cap", "coat", "jacket", "scarf", "mittens", "gloves", "boots", "shoes", "socks",
    "shirt", "dress", "skirt", "pants", "shorts", "sweater", "pajamas", "raincoat", "sandals",
    "overalls", "vest", "hoodie", "sneakers", "bow", "slippers", "sun hat", "swimsuit", "apron",
];

/// Vehicles.
pub const VEHICLES: &[&str] = &[
    "car",
    "bus",
    "truck",
    "train",
    "bike",
    "boat",
    "plane",
    "tractor",
    "ship",
    "van",
    "taxi",
    "scooter",
    "fire truck",
    "helicopter",
    "sailboat",
    "motorcycle",
    "garbage truck",
    "ice cream truck",
    "school bus",
    "digger",
];

/// Colours.
pub const COLORS: &[&str] = &[
    "red",
    "blue",
    "green",
    "yellow",
    "orange",
    "purple",
    "pink",
    "brown",
    "black",
    "white",
    "gray",
    "golden",
    "silver",
    "bright red",
    "light blue",
    "dark green",
    "rainbow",
];

/// Sizes and shapes.
pub const SIZES: &[&str] = &[
    "big", "small", "little", "tiny", "huge", "tall", "short", "long", "giant", "round", "wide",
    "chubby", "skinny", "enormous", "teeny",
];

/// Quiet good feelings ("warm and cozy inside").
pub const FEEL_GOOD: &[&str] = &[
    "happy", "glad", "calm", "thankful", "cozy", "hopeful", "safe", "loved", "peaceful", "content",
    "good",
];

/// Big happy feelings, after a success.
pub const FEEL_JOY: &[&str] = &[
    "happy",
    "glad",
    "excited",
    "cheerful",
    "joyful",
    "jolly",
    "delighted",
    "thrilled",
    "overjoyed",
];

/// Sad feelings, after a loss.
pub const FEEL_SAD: &[&str] = &[
    "sad",
    "upset",
    "unhappy",
    "gloomy",
    "miserable",
    "disappointed",
    "lonely",
    "heartbroken",
];

/// Cross feelings, after a failure.
pub const FEEL_CROSS: &[&str] = &["frustrated", "grumpy", "cranky", "cross", "upset", "mad"];

/// Scared feelings.
pub const FEEL_SCARED: &[&str] = &[
    "scared",
    "afraid",
    "nervous",
    "worried",
    "frightened",
    "shaky",
];

/// Bodily states.
pub const FEEL_BODY: &[&str] = &["tired", "sleepy", "hungry", "thirsty"];

/// Textures: how a thing feels to touch.
pub const TEXTURES: &[&str] = &[
    "soft", "smooth", "rough", "bumpy", "fuzzy", "fluffy", "sticky", "slimy", "wet", "dry", "hard",
    "squishy", "silky", "prickly", "scratchy", "crunchy", "slippery", "furry", "lumpy", "gooey",
    "spongy", "velvety",
];

/// Personality words for a child.
pub const TRAITS: &[&str] = &[
    "curious",
    "kind",
    "brave",
    "shy",
    "cheerful",
    "playful",
    "clever",
    "gentle",
    "funny",
    "busy",
    "sweet",
    "friendly",
    "lively",
    "thoughtful",
    "helpful",
    "silly",
    "quiet",
    "caring",
    "happy",
    "bouncy",
];

/// Other describing words for things.
pub const QUALITIES: &[&str] = &[
    "pretty",
    "beautiful",
    "shiny",
    "new",
    "old",
    "special",
    "funny",
    "magic",
    "secret",
    "quiet",
    "noisy",
    "clean",
    "dirty",
    "messy",
    "tidy",
    "bright",
    "dark",
    "sparkly",
    "wonderful",
    "lovely",
    "fancy",
    "plain",
    "heavy",
    "light",
    "colorful",
    "strange",
    "amazing",
    "perfect",
    "favorite",
    "precious",
];

/// Tastes.
pub const TASTES: &[&str] = &[
    "sweet",
    "yummy",
    "tasty",
    "juicy",
    "fresh",
    "crisp",
    "warm",
    "delicious",
    "crunchy",
    "creamy",
    "scrumptious",
];

/// Manner adverbs ("she walked slowly").
pub const ADVERBS: &[&str] = &[
    "slowly",
    "quickly",
    "quietly",
    "loudly",
    "softly",
    "gently",
    "carefully",
    "happily",
    "sleepily",
    "bravely",
    "proudly",
    "kindly",
    "eagerly",
    "patiently",
    "politely",
    "shyly",
    "nervously",
    "excitedly",
    "calmly",
    "cheerfully",
    "gladly",
    "warmly",
    "tightly",
    "busily",
    "merrily",
    "quietly",
    "swiftly",
    "cautiously",
    "playfully",
    "hopefully",
];

/// Parts of the day.
pub const DAYTIMES: &[&str] = &["morning", "afternoon", "evening"];

/// Days of the week.
pub const WEEKDAYS: &[&str] = &[
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Seasons.
pub const SEASONS: &[&str] = &["spring", "summer", "fall", "autumn", "winter"];

/// Months.
pub const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Sounds heard around a house or garden (nouns).
pub const NOISES: &[&str] = &[
    "a soft noise",
    "a little squeak",
    "a funny sound",
    "a loud bang",
    "a tiny jingle",
    "a scratching sound",
    "a rustle",
    "a thump",
    "a giggle",
    "a splash",
    "a crunch",
];

/// Games children play.
pub const GAMES: &[&str] = &[
    "tag",
    "hide-and-seek",
    "catch",
    "pretend",
    "dress-up",
    "hopscotch",
    "follow the leader",
    "house",
    "pirates",
    "tea party",
    "peekaboo",
    "simon says",
    "red light green light",
    "duck duck goose",
    "marbles",
    "store",
];
