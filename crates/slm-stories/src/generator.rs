//! The story plan and the teller that renders it: who is in a story, what they own, where it
//! happens, and the filling of every template slot from that plan.
//!
//! Part of the built-in demo corpus (a toy for `slm quickstart`, not a benchmark).
//!
//! A story is made in two steps. [`plan_story`] draws a [`StoryPlan`]: the shape, the hero,
//! a friend, a grown-up, a pet, a special toy, a place and the shape's situation. Then a
//! [`Teller`] walks the shape's script (see `shapes`), choosing a template for each beat and
//! filling its slots. Slots that name a character (`{H}`, `{he}`, `{fhis}`, ...) always come
//! from the plan, so names, pronouns, the pet and the toy stay the same for the whole story;
//! filler slots (`{animal}`, `{food}`, ...) draw fresh words each time. Every rendered line
//! records which characters' pronouns it used, so tests can check pronoun agreement.

use super::characters::{
    Character, Gender, Grownup, PetKind, ALL_PRONOUNS, GROWNUPS, NAMES, PET_KINDS, PET_NAMES,
};
use super::morphology::{article, ing, past, plural};
use super::rng::Rng;
use super::shapes::{tell_shape, Shape};
use super::situations::{Fear, Need, Skill, Trip, FEARS, NEEDS, SKILLS, TRIPS};
use super::template::{render, Slots};
use super::verbs::{
    move_paths, move_verbs, Phrase, ACTIVITIES, ASKED, CHEERED, CHORES, HAPPY_GESTURES, REPLIED,
    SAD_GESTURES, SAID, SHOUTED, SMALL_GESTURES,
};
use super::words::*;

/// A story's pet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pet {
    pub kind: PetKind,
    pub name: &'static str,
    pub gender: Gender,
    pub adjective: &'static str,
}

/// A story's special object: a toy of one colour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Treasure {
    pub noun: &'static str,
    pub color: &'static str,
}

/// Everything fixed about one story before a word is written.
#[derive(Clone, Copy, Debug)]
pub struct StoryPlan {
    pub shape: Shape,
    pub hero: Character,
    /// Personality word for the hero ("curious").
    pub hero_trait: &'static str,
    /// Always a different name from the hero's.
    pub friend: Character,
    pub grownup: Grownup,
    pub pet: Pet,
    pub treasure: Treasure,
    /// Where play happens ("park").
    pub place: &'static str,
    pub skill: Skill,
    pub fear: Fear,
    pub trip: Trip,
    pub need: Need,
}

/// Who a pronoun slot referred to: bits of [`Line::roles`].
pub mod role {
    pub const HERO: u8 = 1;
    pub const FRIEND: u8 = 2;
    pub const GROWNUP: u8 = 4;
    pub const PET: u8 = 8;
    /// "they/them/their" for several characters together.
    pub const GROUP: u8 = 16;
}

/// One rendered template: usually one sentence, sometimes two.
#[derive(Clone, Debug)]
pub struct Line {
    pub text: String,
    /// Bit set of [`role`]s whose pronouns this line used.
    pub roles: u8,
    /// True if template text (not a slot) held a third-person pronoun; templates must not.
    pub literal_pronoun: bool,
    /// Index of the paragraph this line belongs to.
    pub paragraph: usize,
}

/// A finished story: its plan, its lines and its text.
#[derive(Clone, Debug)]
pub struct RenderedStory {
    pub plan: StoryPlan,
    pub lines: Vec<Line>,
    pub text: String,
}

const PET_ADJECTIVES: &[&str] = &[
    "little", "funny", "playful", "friendly", "sweet", "silly", "clever", "lazy", "happy", "tiny",
    "cute", "cheeky", "gentle", "curious",
];

const BIRDS: &[&str] = &[
    "bird", "robin", "sparrow", "bluebird", "crow", "pigeon", "duck", "goose", "swan", "chick",
];

const BUGS: &[&str] = &[
    "ladybug",
    "beetle",
    "ant",
    "caterpillar",
    "worm",
    "snail",
    "spider",
    "grasshopper",
    "cricket",
    "firefly",
];

const FLUTTERERS: &[&str] = &["butterfly", "dragonfly", "firefly", "moth", "ladybug"];

const NUMBERS: &[&str] = &[
    "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
];

const ONE_MORNING: &[&str] = &[
    "one morning",
    "one {weather} morning",
    "on {weekday} morning",
    "early one morning",
    "one {season} morning",
];

const ONE_DAY: &[&str] = &[
    "one day",
    "one {weather} {daytime}",
    "one {season} day",
    "on {a_weather} {weekday}",
    "early one morning",
    "one {weekday} {daytime}",
    "one day in {month}",
    "last {season}",
];

/// Draws the plan of a story.
pub fn plan_story(rng: &mut Rng) -> StoryPlan {
    let shape = rng.pick(Shape::ALL);
    let hero = rng.pick(NAMES);
    let mut friend = rng.pick(NAMES);
    while friend.name == hero.name {
        friend = rng.pick(NAMES);
    }
    let pet_gender = if rng.chance(50) {
        Gender::He
    } else {
        Gender::She
    };
    StoryPlan {
        shape,
        hero,
        hero_trait: rng.pick(TRAITS),
        friend,
        grownup: rng.pick(GROWNUPS),
        pet: Pet {
            kind: rng.pick(PET_KINDS),
            name: rng.pick(PET_NAMES),
            gender: pet_gender,
            adjective: rng.pick(PET_ADJECTIVES),
        },
        treasure: Treasure {
            noun: rng.pick(TOYS),
            color: rng.pick(COLORS),
        },
        place: rng.pick(PLAY_PLACES),
        skill: rng.pick(SKILLS),
        fear: rng.pick(FEARS),
        trip: rng.pick(TRIPS),
        need: rng.pick(NEEDS),
    }
}

/// Renders a plan as text: walks its shape's script with a [`Teller`].
pub fn tell(plan: StoryPlan, rng: Rng) -> RenderedStory {
    let mut teller = Teller::new(plan, rng);
    tell_shape(&mut teller);
    teller.finish()
}

/// Writes one story: holds the plan, the random stream and the lines written so far.
pub struct Teller {
    plan: StoryPlan,
    rng: Rng,
    lines: Vec<Line>,
    paragraph: usize,
    roles: u8,
    literal_pronoun: bool,
    /// A value for the `{spot}` slot, set by a script before a beat.
    pub spot: &'static str,
    /// The last activity drawn, so two in a row differ.
    last_activity: usize,
    /// Trip sights already named (bit per index), so a sight is not named twice.
    used_sights: u64,
}

impl Teller {
    fn new(plan: StoryPlan, rng: Rng) -> Self {
        Self {
            plan,
            rng,
            lines: Vec::with_capacity(32),
            paragraph: 0,
            roles: 0,
            literal_pronoun: false,
            spot: "",
            last_activity: usize::MAX,
            used_sights: 0,
        }
    }

    /// The story's plan.
    pub fn plan(&self) -> &StoryPlan {
        &self.plan
    }

    /// The story's random stream.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Writes one of `options`, chosen at random, as the next line.
    pub fn say(&mut self, options: &[&'static str]) {
        let template = self.rng.pick(options);
        self.say_this(template);
    }

    /// Writes one of `options` with probability `percent`/100.
    pub fn maybe(&mut self, percent: u32, options: &[&'static str]) {
        if self.rng.chance(percent) {
            self.say(options);
        }
    }

    /// Writes `template` as the next line.
    pub fn say_this(&mut self, template: &'static str) {
        if template.is_empty() {
            return;
        }
        self.roles = 0;
        self.literal_pronoun = false;
        let mut text = String::with_capacity(template.len() + 48);
        render(template, self, &mut text);
        capitalize_first_letter(&mut text);
        self.lines.push(Line {
            text,
            roles: self.roles,
            literal_pronoun: self.literal_pronoun,
            paragraph: self.paragraph,
        });
    }

    /// Starts a new paragraph (no-op if the current one is empty).
    pub fn paragraph(&mut self) {
        if self
            .lines
            .last()
            .is_some_and(|l| l.paragraph == self.paragraph)
        {
            self.paragraph += 1;
        }
    }

    fn finish(self) -> RenderedStory {
        let mut text = String::with_capacity(self.lines.iter().map(|l| l.text.len() + 1).sum());
        let mut last_paragraph = None;
        for line in &self.lines {
            match last_paragraph {
                None => {}
                Some(p) if p == line.paragraph => text.push(' '),
                Some(_) => text.push_str("\n\n"),
            }
            text.push_str(&line.text);
            last_paragraph = Some(line.paragraph);
        }
        RenderedStory {
            plan: self.plan,
            lines: self.lines,
            text,
        }
    }

    fn pronoun(&mut self, role_bit: u8, word: &str, out: &mut String) {
        self.roles |= role_bit;
        out.push_str(word);
    }

    fn animal(&mut self, homes: Homes) -> Animal {
        let count = ANIMALS.iter().filter(|a| a.homes & homes != 0).count();
        let k = self.rng.below(count);
        ANIMALS
            .iter()
            .filter(|a| a.homes & homes != 0)
            .nth(k)
            .copied()
            .unwrap_or_default()
    }

    fn noisy_animal(&mut self, homes: Homes) -> Animal {
        let matches = |a: &&Animal| a.homes & homes != 0 && !a.sound.is_empty();
        let count = ANIMALS.iter().filter(matches).count();
        let k = self.rng.below(count);
        ANIMALS
            .iter()
            .filter(matches)
            .nth(k)
            .copied()
            .unwrap_or_default()
    }

    fn animal_went(&mut self, homes: Homes, out: &mut String) {
        let a = self.animal(homes);
        let mut noun = String::new();
        if self.rng.chance(50) {
            noun.push_str(self.rng.pick(SIZES));
            noun.push(' ');
        }
        noun.push_str(a.name);
        out.push_str(article(&noun));
        out.push(' ');
        out.push_str(&noun);
        out.push(' ');
        out.push_str(&past(self.rng.pick(move_verbs(a.moves))));
        out.push(' ');
        out.push_str(self.rng.pick(move_paths(a.moves)));
    }

    fn animal_said(&mut self, homes: Homes, out: &mut String) {
        let a = self.noisy_animal(homes);
        if a.name.is_empty() {
            out.push_str("a bird sang a little song");
            return;
        }
        out.push_str(article(a.name));
        out.push(' ');
        out.push_str(a.name);
        out.push_str(" said, \"");
        let mut sound = String::new();
        super::morphology::push_capitalized(&mut sound, a.sound);
        out.push_str(&sound);
        out.push_str("!\"");
    }

    fn phrase(&mut self, p: Phrase, form: fn(&str) -> String, out: &mut String) {
        out.push_str(&form(p.verb));
        if !p.rest.is_empty() {
            out.push(' ');
            out.push_str(p.rest);
        }
    }

    fn sight(&mut self, out: &mut String) {
        let trip = self.plan.trip;
        let n = trip.sights.len().min(64);
        let unused: Vec<usize> = (0..n)
            .filter(|i| self.used_sights & (1 << i) == 0)
            .collect();
        if (trip.homes != 0 && self.rng.chance(60)) || unused.is_empty() {
            let a = self.animal(if trip.homes == 0 {
                HOME_ZOO
            } else {
                trip.homes
            });
            out.push_str(&plural(a.name));
        } else {
            let i = self.rng.pick(&unused);
            self.used_sights |= 1 << i;
            out.push_str(trip.sights.get(i).copied().unwrap_or("tall trees"));
        }
    }

    /// An activity different from the one drawn just before.
    fn activity(&mut self) -> Phrase {
        let mut i = self.rng.below(ACTIVITIES.len());
        if i == self.last_activity {
            i = (i + 1) % ACTIVITIES.len().max(1);
        }
        self.last_activity = i;
        ACTIVITIES.get(i).copied().unwrap_or_default()
    }
}

fn base(verb: &str) -> String {
    verb.to_string()
}

/// Inflects the first word of a phrase: `jump up and down` -> `jumped up and down`.
fn inflect_first(phrase: &str, form: fn(&str) -> String, out: &mut String) {
    match phrase.split_once(' ') {
        Some((first, rest)) => {
            out.push_str(&form(first));
            out.push(' ');
            out.push_str(rest);
        }
        None => out.push_str(&form(phrase)),
    }
}

fn capitalize_first_letter(text: &mut String) {
    if let Some((i, c)) = text.char_indices().find(|(_, c)| c.is_alphabetic()) {
        if c.is_lowercase() {
            let upper: String = c.to_uppercase().collect();
            text.replace_range(i..i + c.len_utf8(), &upper);
        }
    }
}

impl Slots for Teller {
    fn literal(&mut self, text: &str) {
        if cfg!(test) {
            let has = text
                .split(|c: char| !c.is_alphabetic())
                .any(|w| ALL_PRONOUNS.contains(&w.to_lowercase().as_str()));
            self.literal_pronoun |= has;
        }
    }

    fn fill(&mut self, key: &str, out: &mut String) -> bool {
        use role::*;
        let plan = self.plan;
        let hero = plan.hero.gender;
        let friend = plan.friend.gender;
        let grown = plan.grownup.gender;
        let pet = plan.pet.gender;
        match key {
            // The hero.
            "h" => out.push_str(plan.hero.name),
            "he" => self.pronoun(HERO, hero.subject(), out),
            "him" => self.pronoun(HERO, hero.object(), out),
            "his" => self.pronoun(HERO, hero.possessive(), out),
            "self" => self.pronoun(HERO, hero.reflexive(), out),
            "was" => out.push_str(hero.was()),
            "is" => out.push_str(hero.is()),
            "kid" => out.push_str(hero.kid()),
            "trait" => out.push_str(plan.hero_trait),
            // The friend.
            "f" => out.push_str(plan.friend.name),
            "fhe" => self.pronoun(FRIEND, friend.subject(), out),
            "fhim" => self.pronoun(FRIEND, friend.object(), out),
            "fhis" => self.pronoun(FRIEND, friend.possessive(), out),
            "fwas" => out.push_str(friend.was()),
            "fkid" => out.push_str(friend.kid()),
            // The grown-up ("{G}" = "Mom", "{g}" = "mom").
            "g" => out.push_str(plan.grownup.noun),
            "ghe" => self.pronoun(GROWNUP, grown.subject(), out),
            "ghim" => self.pronoun(GROWNUP, grown.object(), out),
            "ghis" => self.pronoun(GROWNUP, grown.possessive(), out),
            // The pet.
            "p" => out.push_str(plan.pet.name),
            "pet" => out.push_str(plan.pet.kind.species),
            "petadj" => out.push_str(plan.pet.adjective),
            "phe" => self.pronoun(PET, pet.subject(), out),
            "phim" => self.pronoun(PET, pet.object(), out),
            "phis" => self.pronoun(PET, pet.possessive(), out),
            "pet_noise" => {
                let k = plan.pet.kind;
                if k.noise.is_empty() {
                    inflect_first(k.happy, past, out);
                } else {
                    out.push_str(&past(k.noise));
                }
            }
            "pet_happy" => inflect_first(plan.pet.kind.happy, past, out),
            "pet_moved" => out.push_str(&past(plan.pet.kind.moves)),
            "pet_food" => out.push_str(plan.pet.kind.food),
            "pet_carry" => out.push_str(plan.pet.kind.carries),
            // Several characters together.
            "they" => self.pronoun(GROUP, "they", out),
            "them" => self.pronoun(GROUP, "them", out),
            "their" => self.pronoun(GROUP, "their", out),
            // The special toy and the play place.
            "obj" => out.push_str(plan.treasure.noun),
            "thing" => {
                out.push_str(plan.treasure.color);
                out.push(' ');
                out.push_str(plan.treasure.noun);
            }
            "place" => out.push_str(plan.place),
            "spot" => out.push_str(self.spot),
            // Try-again stories.
            "skill" => self.phrase(plan.skill.skill, base, out),
            "skilling" => self.phrase(plan.skill.skill, ing, out),
            "skilled" => self.phrase(plan.skill.skill, past, out),
            "skill_fail" => out.push_str(plan.skill.fail),
            "skill_fail2" => out.push_str(plan.skill.fail2),
            "skill_tip" => out.push_str(plan.skill.tip),
            "skill_win" => out.push_str(plan.skill.win),
            // Fear stories.
            "fear" => out.push_str(plan.fear.fear),
            "fear_why" => out.push_str(plan.fear.why),
            "fear_trigger" => out.push_str(plan.fear.trigger),
            "fear_help" => out.push_str(plan.fear.help),
            "fear_truth" => out.push_str(plan.fear.truth),
            "fear_brave" => out.push_str(plan.fear.brave),
            "fear_after" => out.push_str(plan.fear.after),
            // Trips.
            "dest" => out.push_str(plan.trip.dest),
            "travel" => out.push_str(self.rng.pick(plan.trip.travel)),
            "sight" => self.sight(out),
            "dest_act" => {
                let p = self.rng.pick(plan.trip.acts);
                self.phrase(p, base, out);
            }
            "dest_acted" => {
                let p = self.rng.pick(plan.trip.acts);
                self.phrase(p, past, out);
            }
            "dest_event" => out.push_str(self.rng.pick(plan.trip.events)),
            "dest_animal_said" => {
                let homes = if plan.trip.homes == 0 {
                    HOME_LOCAL
                } else {
                    plan.trip.homes
                };
                self.animal_said(homes, out);
            }
            "keepsake" => out.push_str(plan.trip.keepsake),
            // Helping stories.
            "need_who" => out.push_str(plan.need.who),
            "need_clue" => out.push_str(plan.need.clue),
            "need_problem" => out.push_str(plan.need.problem),
            "need_act" => out.push_str(plan.need.act),
            "need_thanks" => out.push_str(plan.need.thanks),
            // Fillers: fresh words each time.
            "one_day" => out.push_str(self.rng.pick(ONE_DAY)),
            "one_morning" => out.push_str(self.rng.pick(ONE_MORNING)),
            "home" => out.push_str(self.rng.pick(HOMES)),
            "animal" => out.push_str(self.animal(HOME_LOCAL).name),
            "animals" => out.push_str(&plural(self.animal(HOME_LOCAL).name)),
            "animal_any" => out.push_str(self.rng.pick(ANIMALS).name),
            "animals_any" => out.push_str(&plural(self.rng.pick(ANIMALS).name)),
            "animal_went" => self.animal_went(HOME_LOCAL, out),
            "animal_said" => self.animal_said(HOME_LOCAL, out),
            "bird" => out.push_str(self.rng.pick(BIRDS)),
            "birds" => out.push_str(&plural(self.rng.pick(BIRDS))),
            "bug" => out.push_str(self.rng.pick(BUGS)),
            "bugs" => out.push_str(&plural(self.rng.pick(BUGS))),
            "butterflies" => out.push_str(&plural(self.rng.pick(FLUTTERERS))),
            "number" => out.push_str(self.rng.pick(NUMBERS)),
            "color" => out.push_str(self.rng.pick(COLORS)),
            "size" => out.push_str(self.rng.pick(SIZES)),
            "quality" => out.push_str(self.rng.pick(QUALITIES)),
            "texture" => out.push_str(self.rng.pick(TEXTURES)),
            "taste" => out.push_str(self.rng.pick(TASTES)),
            "feel_good" => out.push_str(self.rng.pick(FEEL_GOOD)),
            "feel_joy" => out.push_str(self.rng.pick(FEEL_JOY)),
            "feel_sad" => out.push_str(self.rng.pick(FEEL_SAD)),
            "feel_cross" => out.push_str(self.rng.pick(FEEL_CROSS)),
            "feel_scared" => out.push_str(self.rng.pick(FEEL_SCARED)),
            "feel_body" => out.push_str(self.rng.pick(FEEL_BODY)),
            "adverb" => out.push_str(self.rng.pick(ADVERBS)),
            "weather" => out.push_str(self.rng.pick(WEATHER)),
            "daytime" => out.push_str(self.rng.pick(DAYTIMES)),
            "weekday" => out.push_str(self.rng.pick(WEEKDAYS)),
            "season" => out.push_str(self.rng.pick(SEASONS)),
            "month" => out.push_str(self.rng.pick(MONTHS)),
            "food" => out.push_str(self.rng.pick(FOODS)),
            "foods" => out.push_str(&plural(self.rng.pick(FOODS))),
            "meal_food" => {
                if self.rng.chance(50) {
                    out.push_str(self.rng.pick(MASS_FOODS));
                } else {
                    out.push_str(&plural(self.rng.pick(FOODS)));
                }
            }
            "drink" => out.push_str(self.rng.pick(DRINKS)),
            "meal" => out.push_str(self.rng.pick(MEALS)),
            "household" => out.push_str(self.rng.pick(HOUSEHOLD)),
            "households" => out.push_str(&plural(self.rng.pick(HOUSEHOLD))),
            "furniture" => out.push_str(self.rng.pick(FURNITURE)),
            "toy" => out.push_str(self.rng.pick(TOYS)),
            "toys" => out.push_str(&plural(self.rng.pick(TOYS))),
            "flower" => out.push_str(self.rng.pick(FLOWERS)),
            "flowers" => out.push_str(&plural(self.rng.pick(FLOWERS))),
            "small_nature" => out.push_str(self.rng.pick(SMALL_NATURE)),
            "small_natures" => out.push_str(&plural(self.rng.pick(SMALL_NATURE))),
            "big_nature" => out.push_str(self.rng.pick(BIG_NATURE)),
            "sky" => out.push_str(self.rng.pick(SKY)),
            "body" => out.push_str(self.rng.pick(BODY)),
            "relative" => out.push_str(self.rng.pick(FAMILY)),
            "clothes" => out.push_str(self.rng.pick(CLOTHES)),
            "vehicle" => out.push_str(self.rng.pick(VEHICLES)),
            "vehicles" => out.push_str(&plural(self.rng.pick(VEHICLES))),
            "town_place" => out.push_str(self.rng.pick(TOWN_PLACES)),
            "noise" => out.push_str(self.rng.pick(NOISES)),
            "game" => out.push_str(self.rng.pick(GAMES)),
            "act" => {
                let p = self.activity();
                self.phrase(p, base, out);
            }
            "acted" => {
                let p = self.activity();
                self.phrase(p, past, out);
            }
            "acting" => {
                let p = self.activity();
                self.phrase(p, ing, out);
            }
            "chore" => {
                let p = self.rng.pick(CHORES);
                self.phrase(p, base, out);
            }
            "chored" => {
                let p = self.rng.pick(CHORES);
                self.phrase(p, past, out);
            }
            "happy_did" => inflect_first(self.rng.pick(HAPPY_GESTURES), past, out),
            "happy_do" => out.push_str(self.rng.pick(HAPPY_GESTURES)),
            "sad_did" => inflect_first(self.rng.pick(SAD_GESTURES), past, out),
            "small_did" => inflect_first(self.rng.pick(SMALL_GESTURES), past, out),
            "said" => out.push_str(self.rng.pick(SAID)),
            "asked" => out.push_str(self.rng.pick(ASKED)),
            "shouted" => out.push_str(self.rng.pick(SHOUTED)),
            "cheered" => out.push_str(self.rng.pick(CHEERED)),
            "replied" => out.push_str(self.rng.pick(REPLIED)),
            _ => return false,
        }
        true
    }
}
