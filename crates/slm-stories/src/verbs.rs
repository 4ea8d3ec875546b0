//! Verb lists for the built-in corpus: things children do, how animals move, how people
//! show feelings and how they speak.
//!
//! Part of the built-in demo corpus (a toy for `slm quickstart`, not a benchmark). Every verb
//! is stored in its base form; `morphology` makes the past and `-ing` forms (irregular verbs
//! are listed there explicitly).
//!
//! A [`Phrase`] is a verb plus the words after it (`build` + `a sandcastle`); the rest may hold
//! template slots such as `{his}`, which the generator fills.

use super::words::Moves;

/// A verb phrase: base verb and what follows it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Phrase {
    pub verb: &'static str,
    pub rest: &'static str,
}

const fn ph(verb: &'static str, rest: &'static str) -> Phrase {
    Phrase { verb, rest }
}

/// Things a child does for fun, anywhere outdoors or at home.
pub const ACTIVITIES: &[Phrase] = &[
    ph("build", "a sandcastle"),
    ph("build", "a tower of blocks"),
    ph("build", "a fort out of pillows"),
    ph("paint", "a picture of {a_animal_any}"),
    ph("draw", "{a_color} {animal_any} with chalk"),
    ph("read", "a book about {animals_any}"),
    ph("bake", "cookies with {his} {g}"),
    ph("bake", "muffins"),
    ph("bake", "a pie with {his} {g}"),
    ph("fly", "a kite"),
    ph("ride", "{his} bike"),
    ph("blow", "bubbles"),
    ph("jump", "in puddles"),
    ph("play", "{game}"),
    ph("pick", "{flowers}"),
    ph("collect", "{small_natures}"),
    ph("feed", "the {birds}"),
    ph("splash", "in the water"),
    ph("swing", "on the swings"),
    ph("slide", "down the big slide"),
    ph("dig", "a hole in the sand"),
    ph("sing", "silly songs"),
    ph("dance", "to music"),
    ph("make", "a card for {his} {relative}"),
    ph("climb", "the jungle gym"),
    ph("roll", "down the grassy hill"),
    ph("chase", "{butterflies}"),
    ph("plant", "{flower} seeds"),
    ph("water", "the {flowers}"),
    ph("stack", "{color} cups"),
    ph("count", "the {birds} in the sky"),
    ph("look", "for {bugs} under rocks"),
    ph("skip", "down the path"),
    ph("hop", "like a bunny"),
    ph("race", "to the big {big_nature}"),
    ph("make", "mud pies"),
    ph("play", "with {his} {toy}"),
    ph("watch", "the clouds go by"),
    ph("throw", "a ball for {his} {pet}"),
    ph("kick", "a ball around"),
    ph("color", "pictures of {animals_any}"),
    ph("do", "a puzzle"),
    ph("whistle", "a happy tune"),
    ph("wear", "a paper crown"),
    ph("make", "a necklace of {color} beads"),
    ph("give", "{his} {pet} a bath"),
    ph("brush", "{his} {pet}'s fur"),
    ph("tell", "jokes"),
    ph("spin", "around and around"),
    ph("hum", "a little song"),
    ph("march", "like a soldier"),
    ph("wiggle", "{his} toes in the grass"),
    ph("sort", "{his} crayons by color"),
    ph("fold", "paper boats"),
    ph("visit", "the {town_place}"),
    ph("bounce", "on the bed"),
    ph("pretend", "to be {a_animal_any}"),
];

/// Ways an animal moves, by how it gets about (base forms).
pub fn move_verbs(moves: Moves) -> &'static [&'static str] {
    match moves {
        Moves::Walks => &[
            "walk", "run", "trot", "wander", "stroll", "race", "scamper", "dash",
        ],
        Moves::Hops => &["hop", "jump", "bounce", "leap", "spring"],
        Moves::Flies => &["fly", "flutter", "swoop", "zoom", "glide", "soar", "dart"],
        Moves::Swims => &["swim", "splash", "paddle", "glide", "dive"],
        Moves::Crawls => &["crawl", "creep", "wiggle", "inch", "slide"],
        Moves::Waddles => &["waddle", "wobble", "shuffle", "toddle"],
    }
}

/// Where an animal went, by how it gets about (may hold slots).
pub fn move_paths(moves: Moves) -> &'static [&'static str] {
    match moves {
        Moves::Walks => &[
            "across the grass",
            "past the {big_nature}",
            "down the path",
            "over the hill",
            "into the bushes",
            "around the {big_nature}",
            "along the fence",
            "under a bench",
        ],
        Moves::Hops => &[
            "across the grass",
            "from rock to rock",
            "over a log",
            "into the tall grass",
            "past the {big_nature}",
            "onto a big leaf",
        ],
        Moves::Flies => &[
            "over the trees",
            "across the sky",
            "past the window",
            "up into the clouds",
            "around the {big_nature}",
            "over the roof",
            "down to the {flowers}",
            "high above the {big_nature}",
        ],
        Moves::Swims => &[
            "in the pond",
            "across the water",
            "under the water",
            "near the shore",
            "by the rocks",
            "through the reeds",
        ],
        Moves::Crawls => &[
            "along a leaf",
            "under a rock",
            "across the path",
            "up a blade of grass",
            "over a pebble",
            "into a little hole",
        ],
        Moves::Waddles => &[
            "to the pond",
            "along the path",
            "down to the water",
            "past the {big_nature}",
            "in a long line",
        ],
    }
}

/// Happy things a body does (base forms, no object needed).
pub const HAPPY_GESTURES: &[&str] = &[
    "smile",
    "grin",
    "laugh",
    "giggle",
    "clap",
    "cheer",
    "jump up and down",
    "dance",
    "twirl around",
    "squeal with joy",
    "beam",
    "skip in a circle",
    "hug everyone",
];

/// Unhappy things a body does (base forms).
pub const SAD_GESTURES: &[&str] = &[
    "frown",
    "pout",
    "sniffle",
    "sigh",
    "cry",
    "sob",
    "stomp {his} feet",
    "hang {his} head",
    "kick a little stone",
    "wipe {his} eyes",
];

/// Calm, small movements (base forms).
pub const SMALL_GESTURES: &[&str] = &[
    "nod",
    "shrug",
    "yawn",
    "stretch",
    "blink",
    "wave",
    "point",
    "tiptoe",
    "peek around",
    "scratch {his} head",
    "rub {his} eyes",
    "tap {his} chin",
];

/// Speech verbs for plain statements (past forms).
pub const SAID: &[&str] = &["said", "said", "said", "whispered"];

/// Speech verbs for answers (past forms).
pub const REPLIED: &[&str] = &["replied", "answered", "said"];

/// Speech verbs for questions (past forms).
pub const ASKED: &[&str] = &["asked", "asked", "asked", "wondered"];

/// Speech verbs for alarmed or upset exclamations (past forms).
pub const SHOUTED: &[&str] = &["shouted", "cried", "yelled", "called"];

/// Speech verbs for happy exclamations (past forms).
pub const CHEERED: &[&str] = &["cheered", "squealed", "shouted", "laughed", "sang out"];

/// Chores around the house.
pub const CHORES: &[Phrase] = &[
    ph("sweep", "the floor"),
    ph("wash", "the dishes"),
    ph("fold", "the towels"),
    ph("water", "the plants"),
    ph("set", "the table"),
    ph("pick", "up the toys"),
    ph("feed", "the {pet}"),
    ph("make", "the bed"),
    ph("carry", "the groceries"),
    ph("dust", "the shelves"),
    ph("hang", "up the coats"),
    ph("sort", "the socks"),
];
