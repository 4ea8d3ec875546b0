//! Story shapes: the scripts that order a story's beats (lost and found, sharing, trying
//! again, a trip, a fear overcome, helping someone, a day in the life).
//!
//! Part of the built-in demo corpus (a toy for `slm quickstart`, not a benchmark). A script is
//! a plain function: it writes beats in order, each beat a random choice among templates, and
//! branches where a story can go more than one way (who finds the lost toy, who settles a
//! quarrel). Dialogue is quoted speech with said/asked/shouted; cause and effect is spelled
//! out with "because" and "so".

use super::beats::{ending, introduce_friend, introduce_pet, introduce_treasure, opening, scenery};
use super::generator::Teller;

/// The kinds of story the corpus tells.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Shape {
    /// A toy goes missing and is found again.
    #[default]
    LostAndFound,
    /// Two friends quarrel over a toy and learn to share.
    Sharing,
    /// Trying, failing, trying again, succeeding.
    TryAgain,
    /// A trip to somewhere new.
    Trip,
    /// A fear faced and overcome.
    Fear,
    /// Helping someone in trouble.
    Helping,
    /// An ordinary day, from waking to sleeping.
    DayInLife,
}

impl Shape {
    /// Every shape.
    pub const ALL: &'static [Shape] = &[
        Shape::LostAndFound,
        Shape::Sharing,
        Shape::TryAgain,
        Shape::Trip,
        Shape::Fear,
        Shape::Helping,
        Shape::DayInLife,
    ];
}

/// Writes the whole story for the teller's plan.
pub fn tell_shape(t: &mut Teller) {
    match t.plan().shape {
        Shape::LostAndFound => lost_and_found(t),
        Shape::Sharing => sharing(t),
        Shape::TryAgain => try_again(t),
        Shape::Trip => trip(t),
        Shape::Fear => fear(t),
        Shape::Helping => helping(t),
        Shape::DayInLife => day_in_life(t),
    }
}

/// Where a lost toy can hide.
const SEARCH_SPOTS: &[&str] = &[
    "under the bed",
    "behind the couch",
    "in the toy box",
    "inside the closet",
    "under the table",
    "in the garden",
    "by the front door",
    "in the bathtub",
    "near the stairs",
    "in the kitchen",
    "under the pillows",
    "behind the curtains",
    "in the laundry basket",
    "under the rug",
    "on the bookcase",
    "in the sandbox",
    "under the slide",
    "behind the shed",
    "in the car",
    "under a pile of leaves",
    "inside the doghouse",
    "in the flower bed",
    "under the porch",
    "in the dresser drawer",
    "behind the piano",
    "next to the washing machine",
    "inside the cupboard",
    "under the rocking chair",
];

/// The first place searched.
const SEARCH_FIRST: &[&str] = &[
    "First, {they} looked {spot}, but the {obj} was not there.",
    "First, {H} looked {spot}. There was only {a_household} and {a_household}.",
    "{H} started by looking {spot}. No {obj}!",
];

/// The places searched after the first (each wording used once per story).
const SEARCH_MORE: &[&str] = &[
    "{They} looked {spot}, but the {obj} was not there.",
    "{H} looked {spot}. There was only {a_household} and {a_household}.",
    "Next, {he} checked {spot}. No {obj}!",
    "{H} peeked {spot}, but {he} only found {a_household}.",
    "{They} searched {spot}. Still no {obj}.",
    "Then {H} looked {spot}, but {he} found only {households}.",
];

fn lost_and_found(t: &mut Teller) {
    opening(t);
    let has_pet = t.rng().chance(60);
    if has_pet {
        introduce_pet(t);
    }
    introduce_treasure(t);
    t.paragraph();
    t.say(&[
        "{One_day}, {H} wanted to play with {his} {obj}, but it was gone!",
        "{One_day}, {H} looked for {his} {thing}, but {he} could not find it anywhere.",
        "After {meal}, {H} went to get {his} {obj}. It was not there!",
        "{One_day}, {H} came home from the {place}, and {his} {obj} was missing.",
        "{One_day}, {H} reached for {his} {thing}, but the spot was empty.",
    ]);
    t.say(&[
        "{H} felt {feel_sad} because {he} loved {his} {obj} so much.",
        "{His} lip shook, and {his} eyes filled with tears.",
        "{H} was so {feel_sad} that {he} {sad_did}.",
        "{He} {sad_did}. Where could it be?",
        "{H} felt {feel_sad}, so {he} sat down on the floor.",
    ]);
    t.say(&[
        "\"{G}, I can't find my {obj}!\" {H} {shouted}.",
        "\"Have you seen my {thing}?\" {H} asked {his} {g}.",
        "{H} ran to {his} {g}. \"My {obj} is lost!\" {he} {shouted}.",
        "\"Where is my {obj}?\" {H} {asked}.",
    ]);
    t.say(&[
        "\"Don't worry, we will find it together,\" {G} {replied}.",
        "\"Where did you see it last?\" {his} {g} asked.",
        "{His} {g} gave {him} a hug. \"Let's look for it,\" {ghe} {said}.",
        "\"Things are never lost for long,\" {G} {replied} with a smile.",
    ]);
    t.paragraph();
    let searches = 2 + t.rng().below(2);
    let picks = t.rng().distinct(SEARCH_SPOTS.len(), searches + 1);
    let wordings = t.rng().distinct(SEARCH_MORE.len(), searches);
    for (k, &i) in picks.iter().take(searches).enumerate() {
        t.spot = SEARCH_SPOTS.get(i).copied().unwrap_or("under the bed");
        if k == 0 {
            t.say(SEARCH_FIRST);
        } else if let Some(&w) = wordings.get(k).and_then(|&w| SEARCH_MORE.get(w)) {
            t.say_this(w);
        }
    }
    t.maybe(
        50,
        &[
            "\"It has to be somewhere,\" {H} {said}.",
            "{H} sat down and {sad_did}. The house was so big, and the {obj} was so small.",
            "\"I will never find it,\" {H} {said} with a sigh.",
            "{H} was getting tired, but {he} did not stop looking.",
        ],
    );
    t.paragraph();
    let pet_carries = !t.plan().pet.kind.carries.is_empty();
    let finder = t.rng().below(3);
    match (finder, has_pet) {
        (0, true) if pet_carries => {
            t.say(&[
                "Just then, {P} came in with the {obj} {pet_carry}!",
                "Then {H} heard a happy sound. {P} trotted in with the {obj} {pet_carry}!",
                "All of a sudden, {P} ran up to {H}, holding the {thing} {pet_carry}.",
            ]);
            pet_thanks(t);
        }
        (0, true) => {
            t.say(&[
                "Then {H} heard {noise} from {P}'s bed. There was {P}, fast asleep on top of the {obj}!",
                "{H} went to say goodnight to {P}, and there was the {obj}, right beside {phim}!",
            ]);
            pet_thanks(t);
        }
        (1, _) => {
            t.spot = picks
                .get(searches)
                .and_then(|&i| SEARCH_SPOTS.get(i))
                .copied()
                .unwrap_or("under the bed");
            t.say(&[
                "At last, {H} found the {obj} {spot}. It had been there all along!",
                "Then {H} remembered: {he} had put it {spot}! And there it was.",
                "{H} looked one more time, {spot}, and there was the {thing}!",
            ]);
            t.say(&[
                "\"I found it!\" {H} {cheered}.",
                "\"My {obj}!\" {H} {cheered}, and {he} {happy_did}.",
                "{H} hugged {his} {thing} tight.",
            ]);
        }
        _ => {
            t.say(&[
                "The next day, {F} came over to help look.",
                "{H}'s friend {F} heard about the lost {obj} and came to help.",
            ]);
            t.say(&[
                "{F} found the {obj} under a pile of leaves in the {place}.",
                "{F} looked high and low, and there it was, on top of the {furniture}!",
                "{F} spotted something {color} under the {furniture}. It was the {obj}!",
            ]);
            t.say(&[
                "\"Thank you, {F}!\" {H} {said}. \"You are a good friend.\"",
                "{H} gave {F} a big hug. \"You found it!\" {he} {cheered}.",
                "\"You are the best!\" {H} {cheered}, and {they} both {happy_did}.",
            ]);
        }
    }
    t.say(&[
        "{H} was so {feel_joy} to have {his} {obj} back.",
        "{H} felt happy again, and {he} {happy_did}.",
        "The {obj} was a bit dusty, but {H} did not mind at all.",
    ]);
    t.paragraph();
    ending(
        t,
        &[
            "From then on, {H} always put {his} {obj} on the shelf before bed.",
            "From then on, {H} kept {his} {obj} in the toy box, so it would not get lost.",
            "{H} learned to take good care of the things {he} loved.",
            "{H} learned that when something is lost, it helps to look slowly and carefully.",
            "{H} learned that friends and family help you find what is lost.",
        ],
    );
}

fn pet_thanks(t: &mut Teller) {
    t.say(&[
        "\"Thank you, {P}!\" {H} {said}, and {P} {pet_happy}.",
        "\"You silly {pet}!\" {H} laughed. \"You had it all along!\"",
        "{H} laughed and hugged {P} and the {obj} at the same time.",
        "\"Good {pet}, {P}!\" {H} {cheered}, and {he} gave {P} {pet_food}.",
    ]);
}

fn sharing(t: &mut Teller) {
    opening(t);
    introduce_friend(t);
    let toy_known = t.rng().chance(40);
    if toy_known {
        introduce_treasure(t);
    }
    t.paragraph();
    if toy_known {
        t.say(&[
            "{One_day}, {F} came to play at {H}'s house.",
            "{One_day}, {H} and {F} went to the {place} to play.",
            "{One_day}, {H} brought {his} {thing} to the {place}, and {F} was there too.",
        ]);
    } else {
        t.say(&[
            "{One_day}, {F} came to play at {H}'s house. {H} had a new {thing}.",
            "{One_day}, {H} and {F} went to the {place}. {H} brought {his} {thing}.",
            "{One_day}, {H} brought {his} {thing} to the {place}, and {F} was there too.",
            "{One_day}, {H} got {a_thing} as a present.",
        ]);
    }
    scenery(t, 1);
    t.say(&[
        "{F} saw the {obj} and wanted to play with it too.",
        "{F} looked at the {thing}. It was so {quality}!",
        "{F}'s eyes went wide when {fhe} saw the {obj}.",
    ]);
    t.say(&[
        "\"Can I have a turn?\" {F} {asked}.",
        "\"Can I play with it too?\" {F} {asked}.",
        "\"Please, can I hold it?\" {F} {asked}.",
    ]);
    t.say(&[
        "\"No! It's mine!\" {H} {shouted}, and {he} held the {obj} tight.",
        "{H} did not want to share. {He} held the {obj} behind {his} back.",
        "\"Not now,\" {H} {said}, and {he} turned away.",
        "\"It's my {obj}, and I want to play with it by myself,\" {H} {said}.",
    ]);
    if t.rng().chance(60) {
        t.say(&[
            "{F} grabbed one end, and {H} held on to the other. {They} pulled and pulled.",
            "{F} reached for the {obj}, and {H} pulled it away.",
            "{They} both tugged at the {obj} at the same time.",
        ]);
        t.say(&[
            "Then, oh no! The {obj} fell into a muddy puddle.",
            "The {obj} slipped out of {their} hands and landed in the dirt.",
            "The {obj} flew up in the air and landed on top of {a_big_nature}.",
            "The {obj} rolled away and got stuck under a prickly bush.",
        ]);
    }
    t.say(&[
        "{F} started to cry, and {H} felt bad inside.",
        "Now nobody was having fun, and both of {them} were sad.",
        "{F} walked away and sat all alone under a tree.",
        "{F}'s face was sad, and {H}'s tummy felt funny inside.",
    ]);
    t.paragraph();
    if t.rng().chance(50) {
        t.say(&[
            "{His} {g} came over and knelt down. \"What if you take turns?\" {ghe} {asked}.",
            "{G} saw what happened. \"Sharing is how we make our friends happy,\" {ghe} said softly.",
            "{H}'s {g} came outside. \"Toys are more fun when we share,\" {ghe} {said}.",
        ]);
        t.say(&[
            "{H} thought about it for a moment.",
            "{H} looked at the {obj}, and then at {F}.",
            "{H} {small_did} and thought hard.",
        ]);
    } else {
        t.say(&[
            "{H} looked at {F}'s sad face. {He} did not like to see {F} sad.",
            "{H} thought for a moment. Playing alone was not much fun at all.",
            "{H} remembered how sad {he} felt when nobody shared with {him}.",
        ]);
    }
    t.say(&[
        "\"You can go first,\" {H} {said}, and {he} gave {F} the {obj}.",
        "\"Let's play with it together,\" {H} {said}.",
        "\"I'm sorry,\" {H} {said}. \"Do you want a turn?\"",
        "{H} walked over to {F}. \"Here, you can have a turn,\" {he} {said}.",
    ]);
    t.say(&[
        "{F} smiled a big smile. \"Thank you, {H}!\" {fhe} {said}.",
        "{F} wiped {fhis} eyes and smiled.",
        "\"Really?\" {F} {asked}. Then {fhe} {happy_did}.",
    ]);
    t.say(&[
        "{They} took turns with the {obj}.",
        "First {H} played with the {obj}, then {F} did.",
        "{They} played with the {obj} together and made up a new game.",
        "{They} played with the {obj} until the sun went down.",
        "{They} took turns, and then {they} played {game} together.",
    ]);
    t.maybe(
        60,
        &[
            "Playing together was twice as much fun.",
            "{They} laughed so much that {their} tummies hurt.",
            "{F} shared {fhis} {foods} with {H}, too.",
            "Even {H}'s {pet}, {P}, came to play.",
        ],
    );
    t.paragraph();
    ending(
        t,
        &[
            "{H} learned that sharing makes everyone happy.",
            "Sharing made {H}'s heart feel warm.",
            "From that day on, {H} and {F} always shared {their} toys.",
            "{H} learned that a toy is more fun with a friend.",
            "{H} found out that when you share, you get a friend to play with.",
        ],
    );
}

fn try_again(t: &mut Teller) {
    opening(t);
    let has_pet = t.rng().chance(40);
    if has_pet {
        introduce_pet(t);
    }
    t.paragraph();
    t.say(&[
        "{H} wanted to {skill} more than anything.",
        "{One_day}, {H} saw {F} {skilling}, and {he} wanted to {skill} too.",
        "{One_day}, {H} decided it was time to learn to {skill}.",
        "All of {H}'s friends could {skill}, but {H} could not, not yet.",
    ]);
    t.say(&[
        "{H} tried to {skill}, but {skill_fail}.",
        "The first time {H} tried, {skill_fail}.",
        "{H} tried and tried, but {skill_fail}.",
        "{H} took a deep breath and tried, but {skill_fail}.",
    ]);
    t.say(&[
        "{H} felt {feel_cross}.",
        "\"I can't do it!\" {H} {shouted}. \"It's too hard!\"",
        "{He} {sad_did}.",
        "{H} felt {feel_cross} and wanted to give up.",
        "\"I will never learn,\" {H} {said}, and {he} {sad_did}.",
    ]);
    t.paragraph();
    let helper = t.rng().below(3);
    if helper == 0 {
        t.say(&[
            "{F} came over to help. \"Here is a trick,\" {fhe} {said}. \"{Skill_tip}.\"",
            "\"I could not do it at first either,\" {F} {said}. \"{Skill_tip}.\"",
        ]);
    } else {
        t.say(&[
            "{His} {g} sat down next to {him}. \"Everyone finds new things hard at first,\" {ghe} explained. \"Try again, and {skill_tip}.\"",
            "{G} gave {him} a hug. \"Don't give up,\" {ghe} {said}. \"{Skill_tip}.\"",
            "\"Here is a secret,\" {G} {said}. \"{Skill_tip}.\"",
        ]);
    }
    t.say(&[
        "So {H} tried again. This time, {skill_fail2}.",
        "Sometimes {skill_fail2}, but {H} did not give up.",
        "{H} tried again. Oops! {Skill_fail2}.",
    ]);
    t.say(&[
        "{H} practiced every day, in the morning and after {meal}.",
        "Each day, {he} got a little bit better.",
        "{He} remembered the trick and tried once more.",
        "{H} practiced on {weekday}, and on {weekday}, and on {weekday} too.",
        "{H} kept trying, even when {his} {body} felt sore.",
    ]);
    if has_pet {
        t.maybe(
            40,
            &[
                "{P} watched and {pet_noise}, as if to say, \"You can do it!\"",
                "{F} cheered from the side. \"Go, {H}, go!\"",
                "Even the {animals} seemed to watch.",
            ],
        );
    } else {
        t.maybe(
            40,
            &[
                "{F} cheered from the side. \"Go, {H}, go!\"",
                "Even the {animals} seemed to watch.",
            ],
        );
    }
    t.paragraph();
    t.say(&[
        "Then, one {daytime}, {skill_win}!",
        "At last, {H} did it! {Skill_win}.",
        "{H} tried one more time, and {skill_win}.",
        "On the very next try, {skill_win}!",
    ]);
    t.say(&[
        "\"I did it! I did it!\" {H} {cheered}.",
        "\"Look at me!\" {H} {cheered}. \"I can do it!\"",
        "{H} {happy_did}. {He} felt so {feel_joy}.",
    ]);
    t.say(&[
        "{His} {g} clapped and cheered. \"I am so proud of you!\" {ghe} {said}.",
        "{G} gave {him} a big hug. \"You never gave up,\" {ghe} {said}.",
        "{F} cheered, and {H} {happy_did}.",
        "{H} felt {feel_joy} and proud.",
    ]);
    t.paragraph();
    ending(
        t,
        &[
            "{H} learned that if you keep trying, you can do hard things.",
            "{H} knew now that trying again is how you learn.",
            "From then on, whenever something was hard, {H} remembered the day {he} learned to {skill}.",
            "{H} learned that mistakes are how we get better.",
            "Now {H} wanted to learn something new every day.",
        ],
    );
}

fn trip(t: &mut Teller) {
    opening(t);
    let has_pet = t.rng().chance(40);
    if has_pet {
        introduce_pet(t);
    }
    t.paragraph();
    t.say(&[
        "{One_day}, {his} {g} said, \"Today we are going to {dest}!\"",
        "{H} and {his} family were going on a trip to {dest}.",
        "{One_day}, {H} and {his} {g} went on an adventure to {dest}.",
        "{One_day}, {H} woke up early, because today was the day of the trip to {dest}.",
    ]);
    t.say(&[
        "{H} was so excited that {he} {happy_did}.",
        "{He} packed {his} {thing}, {a_food} and {his} {color} {clothes} in a bag.",
        "\"Hooray!\" {H} {cheered}. {He} had never been to {dest} before.",
        "{H} could hardly wait. {He} put on {his} {color} {clothes} and ran to the door.",
    ]);
    if has_pet {
        t.maybe(
            60,
            &[
                "\"Can {P} come too?\" {H} {asked}. \"Yes,\" {G} {replied}, and {P} {pet_happy}.",
                "{P} {pet_noise}, because {phe} wanted to come too.",
            ],
        );
    }
    t.say(&[
        "{They} went {travel}.",
        "The ride was long, so {H} looked out the window and counted {vehicles}.",
        "On the way, {H} saw {number} {animals} and a big {big_nature}.",
        "{They} went {travel}, singing songs the whole way.",
    ]);
    t.paragraph();
    t.say(&[
        "When {they} got to {dest}, {H}'s eyes went wide.",
        "{Dest} was even better than {H} had imagined.",
        "At last, {they} were at {dest}!",
    ]);
    let sights = 2 + t.rng().below(2);
    for _ in 0..sights {
        t.say(&[
            "There were {sight} everywhere!",
            "{H} saw {sight} and {sight}.",
            "\"Look, {G}! {Sight}!\" {H} {cheered}.",
            "{H} pointed at the {sight}. \"Wow!\" {he} {said}.",
            "First, {they} went to see the {sight}.",
        ]);
    }
    if t.plan().trip.homes != 0 {
        t.maybe(
            40,
            &["Nearby, {dest_animal_said}", "Then {dest_animal_said}"],
        );
    }
    t.say(&[
        "{H} and {his} {g} {dest_acted}.",
        "Then {they} {dest_acted}.",
        "After that, {they} {dest_acted}, and {H} laughed the whole time.",
        "{H}'s favorite part was when {they} {dest_acted}.",
    ]);
    t.say_this("{dest_event}");
    t.say(&[
        "For lunch, {they} sat on {a_color} blanket and ate {meal_food}.",
        "When {they} got hungry, {they} shared {meal_food} and drank {drink}.",
        "At lunchtime, {H} ate {meal_food}. Everything tasted {taste}.",
    ]);
    t.paragraph();
    t.say(&[
        "When the sun began to set, it was time to go home.",
        "Soon it was time to leave, so {they} waved goodbye to {dest}.",
        "At the end of the day, {they} went home {travel}.",
    ]);
    t.say(&[
        "{H} was tired, but {he} {was} very happy.",
        "{H} took {keepsake} home to remember the day.",
        "{H} fell asleep on the way home, holding {keepsake}.",
    ]);
    if has_pet {
        ending(
            t,
            &[
                "That night, {H} dreamed about {dest}.",
                "\"Can we go back tomorrow?\" {H} asked sleepily.",
                "{H} told {P} all about {dest}.",
            ],
        );
    } else {
        ending(
            t,
            &[
                "That night, {H} dreamed about {dest}.",
                "\"Can we go back tomorrow?\" {H} asked sleepily.",
                "It was the best trip ever.",
            ],
        );
    }
}

fn fear(t: &mut Teller) {
    opening(t);
    if t.rng().chance(40) {
        introduce_pet(t);
    }
    t.say(&[
        "{H} was afraid of {fear}.",
        "There was one thing {H} did not like at all: {fear}.",
        "{H} was brave about most things, but {he} {was} scared of {fear}.",
        "{H} had a secret. {He} {was} afraid of {fear}.",
    ]);
    t.say(&[
        "{He} {was} scared because {fear_why}.",
        "It was scary because {fear_why}.",
        "{H} did not like {fear}, because {fear_why}.",
    ]);
    t.paragraph();
    t.say_this("{fear_trigger}");
    t.say(&[
        "{H} froze. {His} heart went thump, thump, thump.",
        "{H} wanted to run and hide under {his} blanket.",
        "\"I'm scared!\" {H} {shouted}.",
        "{H} held on to {his} {thing} and did not move.",
        "{H}'s knees shook, and {his} hands felt cold.",
        "{H} felt very {feel_scared}.",
    ]);
    t.maybe(
        50,
        &[
            "\"It's okay to be scared,\" {G} said gently. \"I am right here.\"",
            "\"Being scared is okay,\" {G} {said}. \"Let's be brave together.\"",
            "{G} knelt down. \"What are you afraid of?\" {ghe} {asked}.",
        ],
    );
    t.say_this("{Fear_help}.");
    t.say(&[
        "Then {H} saw that {fear_truth}.",
        "Soon {H} found out that {fear_truth}.",
        "{H} looked again, and {he} saw that {fear_truth}.",
    ]);
    t.say(&[
        "So {fear_brave}.",
        "{H} took a deep breath. Then {fear_brave}.",
        "Bit by bit, {H} felt braver, and {fear_brave}.",
    ]);
    t.say(&[
        "\"I did it!\" {H} {said} with a big smile.",
        "{H} felt proud and {feel_joy}.",
        "\"I was brave!\" {H} {cheered}, and {he} {happy_did}.",
        "{His} {g} hugged {him} tight. \"You were so brave,\" {ghe} {said}.",
    ]);
    t.paragraph();
    t.say(&["Now {fear_after}.", "From that day on, {fear_after}."]);
    ending(
        t,
        &[
            "{H} learned that being brave means trying even when you feel scared.",
            "{H} learned that some things only seem scary at first.",
            "{H} knew that {he} could be brave, even when {he} felt a little scared.",
        ],
    );
}

fn helping(t: &mut Teller) {
    opening(t);
    if t.rng().chance(30) {
        introduce_pet(t);
    }
    t.paragraph();
    t.say(&[
        "{One_day}, {H} was walking to the {place} with {his} {g}.",
        "{One_day}, {H} was {acting} in the {place}.",
        "{One_day}, {H} went outside to play.",
        "One day, after {meal}, {H} went for a walk with {his} {g}.",
    ]);
    scenery(t, 2);
    t.say_this("{need_clue}");
    t.maybe(
        50,
        &[
            "\"What's that?\" {H} {asked}.",
            "\"Oh no!\" {H} {said}.",
            "\"Is everything okay?\" {H} {asked}.",
        ],
    );
    t.say(&[
        "{H} saw that {need_problem}.",
        "{H} went closer and saw that {need_problem}.",
        "{H} soon understood: {need_problem}.",
    ]);
    t.say(&[
        "{H} wanted to help.",
        "{H} knew {he} had to help.",
        "\"Don't worry, I will help!\" {H} {said}.",
        "{H} felt worried for a moment, but then {he} had an idea.",
    ]);
    t.paragraph();
    t.say(&["So {need_act}.", "{Need_act}.", "Quickly, {need_act}."]);
    t.say_this("{need_thanks}");
    t.say(&[
        "{H} felt warm and {feel_good} inside.",
        "Helping made {H}'s heart feel big.",
        "{His} {g} said, \"I am proud of you for helping.\"",
        "{H} {happy_did}, because helping felt so good.",
    ]);
    t.paragraph();
    ending(
        t,
        &[
            "{H} learned that helping others makes everyone happy.",
            "{H} learned that even small hands can help in big ways.",
            "From that day on, {H} always looked for ways to help.",
            "Being kind made {H} feel like the luckiest {kid} in the world.",
        ],
    );
}

fn day_in_life(t: &mut Teller) {
    opening(t);
    introduce_pet(t);
    t.paragraph();
    t.say(&[
        "{One_morning}, {H} woke up when the sun peeked through the window.",
        "{One_morning}, {P} {pet_noise} to wake {H} up.",
        "{One_morning}, {H} woke up and {small_did}.",
    ]);
    t.say(&[
        "{H} stretched and yawned. It was {a_weather} day.",
        "{H} looked outside. It was {a_weather} day.",
        "{He} jumped out of bed and ran to the window.",
    ]);
    t.say(&[
        "{He} put on {his} {color} {clothes} and {his} {color} {clothes}.",
        "{H} got dressed in {his} {color} {clothes}.",
        "{H} picked out {his} {quality} {clothes} all by {self}.",
    ]);
    t.say(&[
        "For breakfast, {H} ate {meal_food} and drank {drink}.",
        "{His} {g} made {meal_food} for breakfast. It was {taste}!",
        "At breakfast, {H} shared some {meal_food} with {P}.",
    ]);
    t.paragraph();
    t.say(&[
        "After breakfast, {H} went to the {place} with {his} {g}.",
        "Then {H} and {F} played {game} in the {place}.",
        "In the morning, {H} and {his} {g} walked to the {place}.",
    ]);
    scenery(t, 2);
    t.say(&[
        "{H} {acted}.",
        "{H} {acted}, and then {he} {acted}.",
        "First {H} {acted}. Then {he} {acted}.",
    ]);
    t.say(&[
        "At lunchtime, {they} ate {meal_food} under a shady tree.",
        "Lunch was {meal_food} and {a_food}.",
        "{H}'s tummy rumbled, so {they} went home for lunch.",
    ]);
    t.paragraph();
    t.say(&[
        "In the afternoon, {H} helped {his} {g} {chore}.",
        "In the afternoon, {H} and {his} {g} walked to the {town_place}. On the way, {they} saw {a_color} {vehicle}.",
        "After lunch, {H} {chored} and then took a little nap.",
        "In the afternoon, {H} built a fort with {his} {relative}.",
    ]);
    t.say(&[
        "Later, {H} played with {P}. {P} {pet_happy}.",
        "{H} gave {P} {pet_food}, and {P} {pet_happy}.",
        "{H} and {P} played in the {place} until {H} was {feel_body}.",
    ]);
    t.paragraph();
    t.say(&[
        "Dinner was {meal_food}, and {H} ate every bite.",
        "At dinner, {H} ate {meal_food} and told {his} {g} about {his} day.",
        "{H} helped {his} {g} make {meal_food} for dinner.",
    ]);
    t.say(&[
        "After dinner, {H} took a bath with {his} {toy}.",
        "{H} brushed {his} teeth and put on {his} {color} pajamas.",
        "Bath time was full of bubbles, and {H} made a bubble beard.",
    ]);
    t.say(&[
        "{His} {g} read {him} a story about {a_size} {animal_any} and {a_color} {toy}.",
        "{H} hugged {P} and said goodnight.",
        "\"Goodnight, {G},\" {H} whispered.",
        "{His} {g} sang {him} a soft song about the {sky}.",
    ]);
    t.say(&[
        "Soon, {H} was fast asleep, dreaming of {foods} and {animals_any}.",
        "{H} closed {his} eyes and fell asleep.",
        "{P} curled up at the end of the bed, and soon {they} were both asleep.",
    ]);
    ending(
        t,
        &[
            "Every day with {P} was a good day.",
            "Tomorrow would be another happy day.",
            "It was a simple day, but it was a happy one.",
        ],
    );
}
