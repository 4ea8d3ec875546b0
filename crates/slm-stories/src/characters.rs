//! The people and pets of the built-in corpus: first names with pronoun genders, grown-ups,
//! pet kinds and pet names, and the pronoun forms for each gender.
//!
//! Part of the built-in demo corpus (a toy for `slm quickstart`, not a benchmark). A story's
//! characters are chosen once in its plan, so a name always comes with the same pronouns.

/// Which pronouns a character takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Gender {
    #[default]
    He,
    She,
    They,
}

impl Gender {
    /// Subject pronoun: he / she / they.
    pub fn subject(self) -> &'static str {
        match self {
            Gender::He => "he",
            Gender::She => "she",
            Gender::They => "they",
        }
    }
    /// Object pronoun: him / her / them.
    pub fn object(self) -> &'static str {
        match self {
            Gender::He => "him",
            Gender::She => "her",
            Gender::They => "them",
        }
    }
    /// Possessive determiner: his / her / their.
    pub fn possessive(self) -> &'static str {
        match self {
            Gender::He => "his",
            Gender::She => "her",
            Gender::They => "their",
        }
    }
    /// Reflexive: himself / herself / themself.
    pub fn reflexive(self) -> &'static str {
        match self {
            Gender::He => "himself",
            Gender::She => "herself",
            Gender::They => "themself",
        }
    }
    /// Past of "be" after the subject pronoun: was / was / were.
    pub fn was(self) -> &'static str {
        match self {
            Gender::They => "were",
            _ => "was",
        }
    }
    /// Present of "be" after the subject pronoun: is / is / are.
    pub fn is(self) -> &'static str {
        match self {
            Gender::They => "are",
            _ => "is",
        }
    }
    /// A word for a child of this gender.
    pub fn kid(self) -> &'static str {
        match self {
            Gender::He => "boy",
            Gender::She => "girl",
            Gender::They => "kid",
        }
    }
    /// Every pronoun word this gender uses (lower case).
    pub fn pronoun_words(self) -> &'static [&'static str] {
        match self {
            Gender::He => &["he", "him", "his", "himself"],
            Gender::She => &["she", "her", "hers", "herself"],
            Gender::They => &["they", "them", "their", "theirs", "themself", "themselves"],
        }
    }
}

/// Every third-person personal pronoun (lower case), of any gender.
pub const ALL_PRONOUNS: &[&str] = &[
    "he",
    "him",
    "his",
    "himself",
    "she",
    "her",
    "hers",
    "herself",
    "they",
    "them",
    "their",
    "theirs",
    "themself",
    "themselves",
];

/// A named child.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Character {
    pub name: &'static str,
    pub gender: Gender,
}

const fn she(name: &'static str) -> Character {
    Character {
        name,
        gender: Gender::She,
    }
}
const fn he(name: &'static str) -> Character {
    Character {
        name,
        gender: Gender::He,
    }
}
const fn they(name: &'static str) -> Character {
    Character {
        name,
        gender: Gender::They,
    }
}

/// First names with their pronouns. None of them is also an ordinary word in the lists, so a
/// capitalised name in the text is always a character.
pub const NAMES: &[Character] = &[
    she("Lily"),
    she("Mia"),
    she("Emma"),
    she("Ava"),
    she("Sophie"),
    she("Chloe"),
    she("Zoe"),
    she("Lucy"),
    she("Ella"),
    she("Grace"),
    she("Anna"),
    she("Sara"),
    she("Maya"),
    she("Nora"),
    she("Ruby"),
    she("Stella"),
    she("Hazel"),
    she("Ivy"),
    she("Clara"),
    she("Alice"),
    she("Molly"),
    she("Amy"),
    she("Julia"),
    she("Kate"),
    she("Leah"),
    she("Nina"),
    she("Olivia"),
    she("Hannah"),
    she("Emily"),
    she("Abby"),
    she("Layla"),
    she("Aria"),
    she("Elena"),
    she("Isla"),
    she("Freya"),
    she("Tina"),
    she("Wendy"),
    she("Fiona"),
    she("Jenny"),
    she("Lena"),
    she("Mila"),
    she("Nadia"),
    she("Priya"),
    she("Rosa"),
    she("Sofia"),
    she("Tara"),
    she("Zara"),
    she("Amara"),
    she("Eva"),
    she("Lola"),
    she("Mabel"),
    she("Sadie"),
    she("Tessa"),
    she("Aisha"),
    she("Mei"),
    he("Tom"),
    he("Ben"),
    he("Max"),
    he("Jack"),
    he("Leo"),
    he("Finn"),
    he("Noah"),
    he("Liam"),
    he("Oliver"),
    he("Lucas"),
    he("Ethan"),
    he("Jacob"),
    he("Owen"),
    he("Henry"),
    he("Theo"),
    he("Oscar"),
    he("Felix"),
    he("Hugo"),
    he("Arlo"),
    he("Eli"),
    he("Caleb"),
    he("Daniel"),
    he("David"),
    he("Adam"),
    he("Omar"),
    he("Ravi"),
    he("Luke"),
    he("Nick"),
    he("Pete"),
    he("Ryan"),
    he("Tim"),
    he("Timmy"),
    he("Toby"),
    he("Billy"),
    he("Danny"),
    he("Eddie"),
    he("Freddie"),
    he("George"),
    he("Harry"),
    he("Jamal"),
    he("Kofi"),
    he("Mateo"),
    he("Diego"),
    he("Carlos"),
    he("Marco"),
    he("Ivan"),
    he("Yusuf"),
    he("Arjun"),
    he("Kenji"),
    he("Hiro"),
    they("Sam"),
    they("Alex"),
    they("Riley"),
    they("Jordan"),
    they("Charlie"),
    they("Jamie"),
    they("Quinn"),
    they("Kai"),
    they("Avery"),
    they("Morgan"),
    they("Taylor"),
    they("Casey"),
    they("Rowan"),
    they("Ari"),
    they("Noel"),
    they("Jesse"),
    they("Dakota"),
    they("Frankie"),
    they("Remy"),
    they("Ellis"),
];

/// A grown-up who looks after the hero: how the child calls them, how the narrator names them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Grownup {
    /// As a name: "Mom".
    pub title: &'static str,
    /// After "his/her": "mom".
    pub noun: &'static str,
    pub gender: Gender,
}

/// The grown-ups.
pub const GROWNUPS: &[Grownup] = &[
    Grownup {
        title: "Mom",
        noun: "mom",
        gender: Gender::She,
    },
    Grownup {
        title: "Dad",
        noun: "dad",
        gender: Gender::He,
    },
    Grownup {
        title: "Grandma",
        noun: "grandma",
        gender: Gender::She,
    },
    Grownup {
        title: "Grandpa",
        noun: "grandpa",
        gender: Gender::He,
    },
    Grownup {
        title: "Mama",
        noun: "mama",
        gender: Gender::She,
    },
    Grownup {
        title: "Papa",
        noun: "papa",
        gender: Gender::He,
    },
];

/// A kind of pet and what it does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PetKind {
    pub species: &'static str,
    /// Its noise, base form: "bark".
    pub noise: &'static str,
    /// A happy thing it does, base form with slots: "wag {phis} tail".
    pub happy: &'static str,
    /// How it moves, base form: "run".
    pub moves: &'static str,
    /// Can it carry a toy ("in {phis} mouth")? Empty if not.
    pub carries: &'static str,
    /// What it eats.
    pub food: &'static str,
}

/// Pets a child may have.
pub const PET_KINDS: &[PetKind] = &[
    PetKind {
        species: "dog",
        noise: "bark",
        happy: "wag {phis} tail",
        moves: "run",
        carries: "in {phis} mouth",
        food: "a bone",
    },
    PetKind {
        species: "puppy",
        noise: "yip",
        happy: "wag {phis} tail",
        moves: "scamper",
        carries: "in {phis} mouth",
        food: "a dog biscuit",
    },
    PetKind {
        species: "cat",
        noise: "meow",
        happy: "purr",
        moves: "pad",
        carries: "in {phis} mouth",
        food: "some fish",
    },
    PetKind {
        species: "kitten",
        noise: "mew",
        happy: "roll over on {phis} back",
        moves: "pounce",
        carries: "in {phis} mouth",
        food: "a bowl of milk",
    },
    PetKind {
        species: "bunny",
        noise: "thump",
        happy: "twitch {phis} nose",
        moves: "hop",
        carries: "",
        food: "a carrot",
    },
    PetKind {
        species: "hamster",
        noise: "squeak",
        happy: "run on {phis} wheel",
        moves: "scurry",
        carries: "",
        food: "a sunflower seed",
    },
    PetKind {
        species: "parrot",
        noise: "squawk",
        happy: "flap {phis} wings",
        moves: "fly",
        carries: "in {phis} beak",
        food: "a cracker",
    },
    PetKind {
        species: "turtle",
        noise: "",
        happy: "poke {phis} head out of {phis} shell",
        moves: "crawl",
        carries: "",
        food: "a leaf of lettuce",
    },
    PetKind {
        species: "guinea pig",
        noise: "squeak",
        happy: "wiggle {phis} whiskers",
        moves: "scurry",
        carries: "",
        food: "a piece of apple",
    },
];

/// Pet names; none is a kid's name or an ordinary word in the lists.
pub const PET_NAMES: &[&str] = &[
    "Buddy", "Coco", "Rex", "Pip", "Ziggy", "Oreo", "Scout", "Rusty", "Sparky", "Nibbles", "Toto",
    "Bingo", "Lulu", "Gizmo", "Dottie", "Cuddles", "Bolt", "Duke", "Mochi", "Tango", "Zuzu",
    "Kiki", "Benny", "Gus", "Murphy", "Juno", "Luna", "Nala", "Bruno", "Milo", "Pogo", "Fifi",
    "Bubba", "Winnie", "Zippy",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_has_enough_names_and_no_clashes() {
        assert!(NAMES.len() >= 80, "{} names", NAMES.len());
        let mut seen = std::collections::HashSet::new();
        for c in NAMES {
            assert!(seen.insert(c.name), "name {} twice", c.name);
        }
        for p in PET_NAMES {
            assert!(seen.insert(p), "pet name {p} clashes");
        }
        for g in [Gender::He, Gender::She, Gender::They] {
            assert!(NAMES.iter().filter(|c| c.gender == g).count() >= 10);
        }
    }
}
