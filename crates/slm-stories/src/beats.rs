//! Beats shared by every story shape: openings, introducing the pet, the toy and the friend,
//! little scenes outdoors, and endings.
//!
//! Part of the built-in demo corpus (a toy for `slm quickstart`, not a benchmark). Each beat
//! offers several templates so stories do not all start and end with the same words.
//! Template slots are listed in `generator`; third-person pronouns are always slots.

use super::generator::Teller;

/// The first lines: who the hero is.
pub fn opening(t: &mut Teller) {
    t.say(&[
        "Once upon a time, there was {a_trait} little {kid} named {H}.",
        "Once upon a time, in {home}, there lived {a_trait} {kid} named {H}.",
        "There once was {a_trait} {kid} called {H}.",
        "{H} was {a_trait} {kid} who lived in {home}.",
        "Once there was a little {kid} named {H}, who was very {trait}.",
        "In {home}, there lived a {kid} named {H}.",
        "Once upon a time, {a_trait} {kid} named {H} lived with {his} {g} in {home}.",
        "Not so long ago, there was a {kid} named {H}.",
    ]);
    t.maybe(
        60,
        &[
            "{H} loved to {act}.",
            "More than anything, {H} loved {acting}.",
            "Every day, {H} liked to {act} and to {act}.",
            "{He} always wore {his} {color} {clothes}.",
            "{H} was {number} years old.",
            "{His} favorite food was {meal_food}.",
            "{H} liked {animals_any} and {foods} and {color} things.",
            "{H} had a big smile, and {he} loved {his} {color} {clothes}.",
        ],
    );
}

/// The pet, by name.
pub fn introduce_pet(t: &mut Teller) {
    t.say(&[
        "{H} had {a_petadj} {pet} named {P}.",
        "{H} lived with {his} {g} and {his} {petadj} {pet}, {P}.",
        "{H}'s best friend was {a_petadj} {pet} called {P}.",
        "{H} had a pet {pet}. {Phe} was {petadj}, and {phis} name was {P}.",
    ]);
    t.maybe(
        60,
        &[
            "{P} {pet_happy} whenever {H} came home.",
            "Every morning, {P} {pet_noise} to say hello.",
            "{P}'s favorite treat was {pet_food}.",
            "{P} went everywhere with {H}.",
            "{P} liked to sleep at the end of {H}'s bed.",
        ],
    );
}

/// The special toy.
pub fn introduce_treasure(t: &mut Teller) {
    t.say(&[
        "{H} had {a_thing}.",
        "{His} favorite toy was {a_thing}.",
        "{H}'s {g} had given {him} {a_thing} for {his} birthday.",
        "More than anything, {H} loved {his} {thing}.",
        "{H} had {a_thing} that {he} had found at the {town_place}.",
    ]);
    t.say(&[
        "{He} took it everywhere.",
        "{He} played with it every day.",
        "It was {quality} and {texture}, and {H} loved it very much.",
        "{H} took the {obj} to bed every night.",
        "{He} showed it to everyone {he} met.",
        "No other {obj} in the whole world was quite so {quality}.",
    ]);
}

/// The friend, by name.
pub fn introduce_friend(t: &mut Teller) {
    t.say(&[
        "{H} had a friend named {F}.",
        "{H}'s best friend was {F}, who lived next door.",
        "{F} was {H}'s best friend, and {they} played together every day.",
        "{H} and {F} were best friends.",
        "{H} and {F} met every day at the {place}.",
    ]);
}

/// Little outdoor details, any story.
const SCENERY: &[&str] = &[
    "Birds were singing in the trees.",
    "{animal_went}.",
    "Nearby, {animal_went}.",
    "Just then, {animal_went}.",
    "Somewhere nearby, {animal_said}",
    "There were {color} {flowers} everywhere.",
    "The {flowers} smelled sweet.",
    "The grass felt {texture} under {his} feet.",
    "{A_texture} {bug} crawled along a leaf.",
    "{H} found {a_small_nature} and put it in {his} pocket.",
    "{Number} {birds} sat on the fence.",
    "{A_color} {vehicle} went by.",
    "The wind made the leaves dance.",
    "{H} saw {number} {animals} by the {big_nature}.",
    "The sun felt warm on {his} face.",
    "{H} stopped to look at {a_color} {flower}.",
    "{A_bug} landed on {his} {body}, and {he} giggled.",
    "{A_size} {bug} sat very still on {a_flower}.",
];

/// Up to `n` little outdoor details (each one optional, never the same template twice).
pub fn scenery(t: &mut Teller, n: usize) {
    let picks = t.rng().distinct(SCENERY.len(), n);
    for i in picks {
        if t.rng().chance(70) {
            if let Some(&template) = SCENERY.get(i) {
                t.say_this(template);
            }
        }
    }
}

/// A closing line, and sometimes a moral from `morals`.
pub fn ending(t: &mut Teller, morals: &[&'static str]) {
    if t.rng().chance(70) {
        t.say(morals);
    }
    t.maybe(
        70,
        &[
            "It was the best day ever.",
            "That night, {H} went to sleep with a big smile on {his} face.",
            "That night, {H} dreamed of {acting}.",
            "And {they} all lived happily ever after.",
            "{H} smiled. It had been a very good day.",
            "What a day it had been!",
            "{H} could not wait for tomorrow.",
            "And from then on, every day felt a little brighter.",
        ],
    );
}
