//! The situations a story shape is built around: skills to learn, fears to face, trips to
//! take and people or animals who need help.
//!
//! Part of the built-in demo corpus (a toy for `slm quickstart`, not a benchmark). Each entry
//! is a small set of matching sentence parts, so that a story about a kite stays about a kite
//! from the first try to the last. Parts are templates: `{he}`, `{his}`, `{H}` refer to the
//! hero, `{G}`/`{g}` and `{ghe}` to the grown-up, `{F}` to the friend.

use super::verbs::Phrase;
use super::words::{Homes, HOME_FARM, HOME_FOREST, HOME_LOCAL, HOME_SEA, HOME_SHORE, HOME_ZOO};

/// Something hard to learn: tried, failed, practised, done.
#[derive(Clone, Copy, Debug, Default)]
pub struct Skill {
    /// What the hero wants to do.
    pub skill: Phrase,
    /// The first failure (a clause in the past).
    pub fail: &'static str,
    /// Another failure.
    pub fail2: &'static str,
    /// Advice, as an order ("look ahead").
    pub tip: &'static str,
    /// The success (a clause in the past).
    pub win: &'static str,
}

const fn skill(
    verb: &'static str,
    rest: &'static str,
    fail: &'static str,
    fail2: &'static str,
    tip: &'static str,
    win: &'static str,
) -> Skill {
    Skill {
        skill: Phrase { verb, rest },
        fail,
        fail2,
        tip,
        win,
    }
}

/// Skills for try-and-try-again stories.
pub const SKILLS: &[Skill] = &[
    skill(
        "ride",
        "a bike",
        "the bike wobbled and {he} fell into the grass",
        "{he} scraped {his} knee on the sidewalk",
        "look straight ahead and keep pedaling",
        "{he} pedaled all the way down the street without falling",
    ),
    skill(
        "tie",
        "{his} own shoes",
        "the laces got all tangled up",
        "the bow came undone as soon as {he} stood up",
        "make two bunny ears and cross one over the other",
        "{he} made two loops and pulled the loops tight",
    ),
    skill(
        "swim",
        "across the pool",
        "{he} sank and got water up {his} nose",
        "{he} splashed and splashed but did not move",
        "kick your legs and reach with your arms",
        "{he} kicked and paddled all the way to the other side",
    ),
    skill(
        "climb",
        "to the top of the big oak tree",
        "{his} foot slipped off the first branch",
        "{he} got stuck halfway up and had to climb down",
        "hold on tight and take one branch at a time",
        "{he} reached the top branch and waved at everyone below",
    ),
    skill(
        "fly",
        "a kite",
        "the kite dipped and crashed into the grass",
        "the string got tangled around {his} legs",
        "run into the wind and let the string out slowly",
        "the kite rose high into the sky and danced with the clouds",
    ),
    skill(
        "whistle",
        "a tune",
        "only air came out",
        "{he} made a funny spitting sound",
        "make your lips round like a little o and blow softly",
        "a clear, happy whistle came out",
    ),
    skill(
        "jump",
        "rope",
        "the rope caught on {his} feet",
        "{he} tripped and landed on {his} bottom",
        "count out loud and jump when the rope hits the ground",
        "{he} jumped ten times in a row without stopping",
    ),
    skill(
        "catch",
        "a ball",
        "the ball bounced off {his} hands",
        "the ball bonked {him} right on the nose",
        "watch the ball and use both hands",
        "{he} caught the ball with both hands, again and again",
    ),
    skill(
        "build",
        "a tall tower of blocks",
        "the tower wobbled and crashed to the floor",
        "the blocks tumbled down again",
        "put the biggest blocks at the bottom",
        "the tower stood taller than {his} head",
    ),
    skill(
        "skate",
        "on the ice",
        "{his} feet slid out and {he} landed with a bump",
        "{he} wobbled and grabbed the wall",
        "bend your knees and take small steps",
        "{he} glided across the ice like a swan",
    ),
    skill(
        "bake",
        "a cake",
        "the cake came out flat and burned",
        "{he} spilled flour all over the floor",
        "measure everything carefully and be patient",
        "the cake came out tall, soft and golden",
    ),
    skill(
        "write",
        "{his} name",
        "the letters came out wiggly and backwards",
        "{he} pressed so hard that the pencil broke",
        "go slowly and copy one letter at a time",
        "{he} wrote every letter neatly on the line",
    ),
    skill(
        "do",
        "a cartwheel",
        "{he} tipped over sideways",
        "{he} landed on {his} back with a thud",
        "put your hands down and kick your legs up high",
        "{he} spun all the way over and landed on {his} feet",
    ),
    skill(
        "button",
        "{his} coat",
        "the buttons went into the wrong holes",
        "a button popped right off",
        "start at the bottom and go one button at a time",
        "every button went into the right hole",
    ),
];

/// Something scary that turns out all right.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fear {
    /// The scary thing, as a noun phrase: "the dark".
    pub fear: &'static str,
    /// Why it seemed scary (a clause).
    pub why: &'static str,
    /// The moment the hero has to face it (a sentence).
    pub trigger: &'static str,
    /// What the helper did (a clause).
    pub help: &'static str,
    /// What the hero found out (a clause).
    pub truth: &'static str,
    /// The brave act (a clause).
    pub brave: &'static str,
    /// How things are now (a clause).
    pub after: &'static str,
}

/// Fears for fear-overcome stories.
pub const FEARS: &[Fear] = &[
    Fear {
        fear: "the dark",
        why: "the shadows in {his} room looked like monsters",
        trigger: "One night, {his} night light went out with a little pop.",
        help: "{G} came in with a flashlight and looked in every corner with {him}",
        truth: "the big monster was only {his} coat hanging on the door",
        brave: "{H} turned off the light all by {self}",
        after: "{he} liked to look at the stars from {his} window at night",
    },
    Fear {
        fear: "thunder",
        why: "it was so loud and came so suddenly",
        trigger: "One evening, a big storm came, and thunder boomed across the sky.",
        help: "{G} held {him} close and counted the seconds between the flash and the boom",
        truth: "the storm was far away, and the house kept everyone warm and dry",
        brave: "{H} counted too, and soon the storm rolled away",
        after: "when thunder came, {he} counted and smiled",
    },
    Fear {
        fear: "the big dog next door",
        why: "the dog barked very loudly and had big paws",
        trigger: "One day, the big dog came right up to the fence.",
        help: "{G} showed {him} how to hold out a hand, slow and gentle",
        truth: "the big dog only wanted to say hello",
        brave: "{H} patted the dog's soft head",
        after: "the big dog was {his} friend, and {he} visited every day",
    },
    Fear {
        fear: "the deep end of the pool",
        why: "{he} could not touch the bottom there",
        trigger: "One hot day, the whole family went to the pool.",
        help: "{G} gave {him} bright orange floaties and held {his} hands",
        truth: "the water held {him} up like a soft, cool hug",
        brave: "{H} kicked {his} legs and floated all by {self}",
        after: "{he} loved to splash in the pool",
    },
    Fear {
        fear: "the tall slide",
        why: "it was so high and so fast",
        trigger: "At the playground, all the kids were zooming down the tall slide.",
        help: "{F} said {they} could go down it together",
        truth: "the slide was fast, but it was the good kind of fast",
        brave: "{H} sat at the top, held on tight and let go",
        after: "{he} went down the tall slide again and again",
    },
    Fear {
        fear: "bees",
        why: "bees buzzed and could sting",
        trigger: "In the garden, a fat bee flew right past {his} nose.",
        help: "{G} told {him} to stand still and breathe slowly",
        truth: "the bee only wanted the sweet flowers, not {him}",
        brave: "{H} stood very still, and the bee flew away to {a_flower}",
        after: "{he} liked to watch the bees work in the garden",
    },
    Fear {
        fear: "the doctor",
        why: "{he} thought the doctor might hurt",
        trigger: "One morning, it was time for a checkup.",
        help: "{G} held {his} hand and let {him} bring {his} {obj}",
        truth: "the doctor was kind and only listened to {his} heartbeat",
        brave: "{H} sat still and opened {his} mouth wide to say ahh",
        after: "{he} {was} not scared of checkups anymore",
    },
    Fear {
        fear: "the vacuum cleaner",
        why: "it roared like a hungry lion",
        trigger: "One morning, {his} {g} took out the vacuum cleaner to clean the rug.",
        help: "{G} let {him} press the big button",
        truth: "the vacuum was just a noisy helper that gobbled up dust",
        brave: "{H} pushed the vacuum across the rug all by {self}",
        after: "{he} helped clean the house every Saturday",
    },
    Fear {
        fear: "the first day of school",
        why: "{he} did not know anyone there",
        trigger: "On the first day of school, {H} held {his} {g}'s hand tightly at the door.",
        help: "the teacher smiled and showed {him} the cozy reading corner",
        truth: "the other kids were nice, and the nicest one of all was {F}",
        brave: "{H} let go of {his} {g}'s hand and walked inside",
        after: "{he} could not wait to go to school each morning",
    },
    Fear {
        fear: "the big waves",
        why: "the waves were big and noisy and pulled at {his} feet",
        trigger: "At the beach, the waves crashed on the sand, one after another.",
        help: "{G} held {his} hand and showed {him} how to jump over the small waves",
        truth: "the small waves only tickled {his} toes",
        brave: "{H} ran into the water, laughing",
        after: "{he} jumped over the waves every time the family went to the beach",
    },
];

/// A place to visit.
#[derive(Clone, Copy, Debug, Default)]
pub struct Trip {
    /// The destination as a noun phrase: "the beach".
    pub dest: &'static str,
    /// Where its animals come from (0: none).
    pub homes: Homes,
    /// How the family got there.
    pub travel: &'static [&'static str],
    /// Things to see there, in the plural ("big blue waves").
    pub sights: &'static [&'static str],
    /// Things to do there.
    pub acts: &'static [Phrase],
    /// Small things that happened there (full sentences).
    pub events: &'static [&'static str],
    /// A keepsake taken home: "a pink shell".
    pub keepsake: &'static str,
}

const fn p(verb: &'static str, rest: &'static str) -> Phrase {
    Phrase { verb, rest }
}

/// Trips for adventure stories.
pub const TRIPS: &[Trip] = &[
    Trip {
        dest: "the beach",
        homes: HOME_SHORE,
        travel: &["in the car", "on a bus", "on a little train"],
        sights: &[
            "big blue waves",
            "sailboats",
            "colorful umbrellas",
            "sandcastles",
        ],
        acts: &[
            p("build", "a sandcastle with a moat"),
            p("splash", "in the waves"),
            p("collect", "shells"),
            p("dig", "a deep hole"),
            p("bury", "{his} feet in the warm sand"),
        ],
        events: &[
            "A big wave washed over {his} toes, and {he} squealed.",
            "A seagull stole a cracker right out of the picnic basket!",
            "{H} found a tiny crab hiding under a rock, so {he} watched it scuttle away.",
        ],
        keepsake: "a pink shell",
    },
    Trip {
        dest: "the zoo",
        homes: HOME_ZOO,
        travel: &["in the car", "on a bus", "on the train"],
        sights: &[
            "tall fences",
            "big ponds with fountains",
            "long winding paths",
        ],
        acts: &[
            p("feed", "the goats at the petting zoo"),
            p("watch", "the penguins dive"),
            p("ride", "on a little zoo train"),
            p("wave", "at the sleepy bears"),
        ],
        events: &[
            "A monkey made a funny face at {him}, so {he} made one back.",
            "The elephant sprayed water high into the air, and everyone laughed.",
            "A giraffe bent its long neck down and looked right at {H}.",
        ],
        keepsake: "a toy lion from the gift shop",
    },
    Trip {
        dest: "the farm",
        homes: HOME_FARM,
        travel: &["in the car", "in a truck", "on a bumpy road"],
        sights: &[
            "big red barns",
            "green tractors",
            "fields of corn",
            "stacks of hay",
        ],
        acts: &[
            p("feed", "the chickens"),
            p("collect", "eggs from the hen house"),
            p("ride", "on a hay wagon"),
            p("pet", "the baby goats"),
            p("pick", "apples in the orchard"),
        ],
        events: &[
            "A goat nibbled on {his} sleeve, and {he} giggled.",
            "{H} stepped in a big puddle of mud, so {his} boots went squish.",
            "A tiny chick hopped onto {his} shoe and peeped.",
        ],
        keepsake: "a basket of fresh eggs",
    },
    Trip {
        dest: "the woods",
        homes: HOME_FOREST,
        travel: &["on foot", "in the car", "on {their} bikes"],
        sights: &[
            "tall pine trees",
            "mossy logs",
            "little streams",
            "wild berries",
        ],
        acts: &[
            p("hike", "along the trail"),
            p("cross", "a wooden bridge"),
            p("listen", "to the birds"),
            p("look", "for animal tracks"),
        ],
        events: &[
            "{They} found deer tracks in the soft mud.",
            "A squirrel dropped an acorn right on {his} head!",
            "{H} tripped on a root, but {he} got up and kept going.",
        ],
        keepsake: "a big pinecone",
    },
    Trip {
        dest: "the aquarium",
        homes: HOME_SEA,
        travel: &["on a bus", "in the car", "on the subway"],
        sights: &[
            "big glass tanks",
            "glowing lights",
            "tunnels under the water",
        ],
        acts: &[
            p("touch", "a starfish in the touch pool"),
            p("watch", "the sharks swim by"),
            p("press", "{his} nose against the glass"),
        ],
        events: &[
            "An octopus waved its arms at {him}, so {he} waved back.",
            "A huge fish swam right over {his} head in the tunnel.",
            "{H} counted seven jellyfish glowing in the dark.",
        ],
        keepsake: "a postcard with a whale on it",
    },
    Trip {
        dest: "the lake",
        homes: HOME_LOCAL | HOME_FOREST,
        travel: &["in the car", "in an old van", "on {their} bikes"],
        sights: &[
            "wooden docks",
            "little boats",
            "tall reeds",
            "smooth flat stones",
        ],
        acts: &[
            p("fish", "from the dock"),
            p("row", "a little boat"),
            p("roast", "marshmallows by the fire"),
            p("skip", "stones across the water"),
        ],
        events: &[
            "{H} caught a tiny fish, then let it go back into the water.",
            "A loon called across the lake, long and low.",
            "The marshmallow caught fire, so {H} blew it out and ate it anyway.",
        ],
        keepsake: "a smooth gray stone",
    },
    Trip {
        dest: "the snowy hill",
        homes: HOME_FOREST,
        travel: &["in the car", "on foot", "on a sled pulled by {his} {g}"],
        sights: &[
            "big snowdrifts",
            "icicles",
            "snowy pine trees",
            "little footprints",
        ],
        acts: &[
            p("ride", "a sled down the hill"),
            p("build", "a snowman with a carrot nose"),
            p("make", "snow angels"),
            p("throw", "snowballs"),
        ],
        events: &[
            "{His} mittens got wet, so {they} stopped for hot cocoa.",
            "The sled went so fast that {H} tumbled into a pile of snow.",
            "A snowflake landed right on {his} tongue.",
        ],
        keepsake: "a picture of the snowman",
    },
    Trip {
        dest: "the fair",
        homes: HOME_FARM,
        travel: &["in the car", "on a bus", "on foot"],
        sights: &["giant rides", "colorful tents", "bright lights", "balloons"],
        acts: &[
            p("ride", "the merry-go-round"),
            p("eat", "pink cotton candy"),
            p("win", "a prize at a game"),
            p("see", "the biggest pumpkin in the world"),
        ],
        events: &[
            "The Ferris wheel stopped at the very top, and {H} could see the whole town.",
            "{H} dropped {his} cotton candy, but a kind man gave {him} a new one.",
            "A clown made a balloon dog, just for {him}.",
        ],
        keepsake: "a small stuffed bear",
    },
    Trip {
        dest: "the museum",
        homes: 0,
        travel: &["on a bus", "on the train", "in the car"],
        sights: &[
            "dinosaur bones",
            "old paintings",
            "giant whale models",
            "shiny rocks",
        ],
        acts: &[
            p("look", "at the dinosaur bones"),
            p("see", "a real space rocket"),
            p("draw", "a picture of a dinosaur"),
        ],
        events: &[
            "The dinosaur was so tall that {H} had to lean back to see its head.",
            "{H} whispered, because the museum was so quiet.",
            "A guide let {him} touch a rock from the moon.",
        ],
        keepsake: "a little toy dinosaur",
    },
];

/// Someone who needs help, and how the hero helps.
#[derive(Clone, Copy, Debug, Default)]
pub struct Need {
    /// Who needs help, as the narrator first names them: "a baby bird".
    pub who: &'static str,
    /// How the hero noticed (a sentence).
    pub clue: &'static str,
    /// What was wrong (a clause).
    pub problem: &'static str,
    /// What the hero did (a clause).
    pub act: &'static str,
    /// How they were thanked (a sentence).
    pub thanks: &'static str,
}

/// Needs for helping stories.
pub const NEEDS: &[Need] = &[
    Need {
        who: "a baby bird",
        clue: "{H} heard a tiny peep coming from the grass.",
        problem: "a baby bird had fallen out of its nest",
        act: "{H} held the baby bird gently, and {his} {g} lifted it back into the nest",
        thanks: "The mother bird sang a happy song from the branch.",
    },
    Need {
        who: "an old man",
        clue: "{H} saw apples rolling down the sidewalk.",
        problem: "an old man's bag had torn, and all the apples had spilled out",
        act: "{H} ran after the apples and picked up every apple, one by one",
        thanks: "The old man smiled and gave {H} the shiniest apple of all.",
    },
    Need {
        who: "a little kitten",
        clue: "{H} heard a tiny meow from high up in a tree.",
        problem: "a little kitten was stuck on a branch and could not get down",
        act: "{H} ran to get {his} {g}, and {ghe} climbed a ladder and carried the kitten down",
        thanks: "The kitten purred and rubbed against {H}'s legs.",
    },
    Need {
        who: "{F}",
        clue: "{H} saw {F} sitting all alone, wiping {fhis} eyes.",
        problem: "a big wave had knocked down {F}'s sandcastle",
        act: "{H} sat down beside {fhim} and helped build it again, even bigger than before",
        thanks: "{F} gave {H} a big hug and said, \"You are the best friend ever!\"",
    },
    Need {
        who: "a little duckling",
        clue: "{H} saw a little duckling all alone by the path, peeping loudly.",
        problem: "the duckling had lost its mother",
        act: "{H} walked slowly and led the duckling to the pond, where its mother was waiting",
        thanks: "The mother duck quacked, and the duckling paddled to its mother's side.",
    },
    Need {
        who: "the old lady next door",
        clue: "{H} saw the old lady next door looking at the dry, droopy flowers.",
        problem: "the old lady next door had a sore back and could not water the garden",
        act: "{H} filled a watering can and watered every single flower",
        thanks: "The old lady gave {H} a jar of honey and a big smile.",
    },
    Need {
        who: "{his} {g}",
        clue: "{H} saw {his} {g} sitting on the couch with tired eyes.",
        problem: "{his} {g} was very tired after a long day at work",
        act: "{H} set the table, swept the floor and brought {ghim} a cup of tea",
        thanks: "{G} gave {H} a big hug and said, \"What a kind helper you are!\"",
    },
    Need {
        who: "a lost puppy",
        clue: "{H} saw a little puppy with a red collar sniffing around, all alone.",
        problem: "the puppy was lost and could not find its way home",
        act: "{H} read the tag on its collar, and {his} {g} helped walk the puppy home",
        thanks: "The puppy's family cheered and said thank you again and again.",
    },
    Need {
        who: "{F}",
        clue: "{H} heard a thump and saw {F} on the ground.",
        problem: "{F} had tripped on a rock and scraped {fhis} knee",
        act: "{H} helped {fhim} up, held {fhis} hand and found a bandage",
        thanks: "{F} smiled through the tears and said, \"Thank you for helping me.\"",
    },
    Need {
        who: "a slow little snail",
        clue: "{H} saw a slow little snail crossing the busy sidewalk.",
        problem: "people were walking by, and someone might step on the snail",
        act: "{H} picked up the snail carefully and put it on a leaf in the garden",
        thanks: "The snail poked out its eyes, as if to say thank you.",
    },
];
