//! The Nexmark event generator: every event a pure function of `(seed, event number)`.
//!
//! The model is Beam's Nexmark generator's (`NexmarkConfiguration` defaults):
//!
//! - **Kinds.** Event numbers come in groups of 50: in each group, number 0 is a person, 1–3 are
//!   auctions and 4–49 are bids (person : auction : bid = 1 : 3 : 46, exact per group).
//! - **Ids.** The k-th person (0-based) has id `1000 + k`, and likewise the k-th auction, so an
//!   event's own id follows from its number alone.
//! - **Who bids on what.** A bid's auction is *hot* with probability `(r − 1) / r` for
//!   `hot_auction_ratio = r`: then it is the first auction of the latest block of 100 auction
//!   ids (the auctions created so far, rounded down to a multiple of 100); otherwise it is
//!   uniform over the last `num_in_flight_auctions` auctions plus 10 ids not created yet. Bidders
//!   follow the same rule with `hot_bidder_ratio`, the hot one being the *second* person of the
//!   latest block of 100 people, the others uniform over the last `num_active_people` people plus
//!   10 ahead. Sellers likewise with `hot_seller_ratio`, the hot one being the block's first
//!   person. So a ratio of 1 turns the skew off and a ratio of 100 puts 99 % of bids on one
//!   auction at a time.
//! - **Values.** Prices are `round(100 · 10^(6u))` for uniform `u` (log-uniform over 100 … 10⁸);
//!   a reserve is the initial bid plus another price; categories are 10–14; an auction's length
//!   is uniform in `1 ..= 2h` ms, `h` being the event time it takes to create
//!   `num_in_flight_auctions` more auctions (so at the default 10 M events/s auctions are 1 ms
//!   long, as in Beam and Flink); text fields are random lowercase strings with occasional
//!   spaces; half the bids come through one of four hot channels, the rest through one of
//!   10 000 numbered channels, each with its URL.
//! - **Sizes.** `extra` pads an event to the model's average size (person 200, auction 500, bid
//!   100 bytes, counting each number as 8 bytes and each string as its length): its length is
//!   uniform in `[0.8 d, 1.2 d)` for the remaining `d`, as Beam's padding is. The text comes
//!   from a fixed pool of random letters at a random offset, which is as random to a query as
//!   fresh letters and far cheaper.
//!
//! **Event time.** Event `n` is created at `base_time_ms + ⌊n · 1000 / event_rate⌋` (integer
//! arithmetic on the whole product, so at 10 M events/s ten thousand events share each
//! millisecond and no rounding error accumulates). A fraction `prob_delayed_event` of the events
//! then has its `dateTime` moved back by a uniform delay in `1 ..= max_delay_ms`: the stream is out
//! of order, but never by more than `max_delay_ms` behind an event created before it. An
//! auction's `expires` is its (possibly delayed) `dateTime` plus its length.
//!
//! **Determinism and parallelism.** Each event draws from its own counter-based random stream,
//! seeded by hashing `(seed, n)`; no state carries from one event to the next. So
//! [`Generator::split`]`(cfg, i, k)`, which produces the numbers `i, i + k, i + 2k, …`, yields
//! exactly the events of [`Generator::new`] that fall to instance `i`, whatever the instance
//! count, and [`event`] gives any single event directly.

use std::sync::OnceLock;

use super::model::{Auction, Bid, Event, Person};

/// The first person id; the k-th person has id `FIRST_PERSON_ID + k`.
pub const FIRST_PERSON_ID: u64 = 1000;
/// The first auction id; the k-th auction has id `FIRST_AUCTION_ID + k`.
pub const FIRST_AUCTION_ID: u64 = 1000;
/// The first category id; categories are `FIRST_CATEGORY_ID .. FIRST_CATEGORY_ID + NUM_CATEGORIES`.
pub const FIRST_CATEGORY_ID: u64 = 10;
/// How many categories auctions are spread over.
pub const NUM_CATEGORIES: u64 = 5;
/// Persons per group of [`PROPORTION_DENOMINATOR`] events.
pub const PERSON_PROPORTION: u64 = 1;
/// Auctions per group of [`PROPORTION_DENOMINATOR`] events.
pub const AUCTION_PROPORTION: u64 = 3;
/// Bids per group of [`PROPORTION_DENOMINATOR`] events.
pub const BID_PROPORTION: u64 = 46;
/// Events per group: person, then auctions, then bids.
pub const PROPORTION_DENOMINATOR: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;
/// Hot auctions, sellers and bidders are chosen among blocks of this many ids.
const HOT_BLOCK: u64 = 100;
/// Ids a bid or auction may name beyond the last one created.
const ID_LEAD: u64 = 10;
/// Average event sizes in bytes (numbers count 8, strings their length).
const AVG_PERSON_BYTES: usize = 200;
const AVG_AUCTION_BYTES: usize = 500;
const AVG_BID_BYTES: usize = 100;
/// Half the bids come through a hot channel.
const HOT_CHANNELS_RATIO: u64 = 2;
/// Numbered channels for the other half.
const NUM_CHANNELS: u64 = 10_000;
/// 2015-07-15T00:00:00Z, Beam's base time, in epoch milliseconds.
const DEFAULT_BASE_TIME_MS: i64 = 1_436_918_400_000;

/// What to generate. [`Default`] is Beam's `NexmarkConfiguration` with Flink's published event
/// rate (10 M events per second of event time).
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorConfig {
    /// Total events to generate.
    pub events: u64,
    /// Events per second of event time.
    pub event_rate: u64,
    /// The first event's time, epoch milliseconds.
    pub base_time_ms: i64,
    /// A bid is on the hot auction with probability `(r − 1) / r`.
    pub hot_auction_ratio: u64,
    /// An auction is by the hot seller with probability `(r − 1) / r`.
    pub hot_seller_ratio: u64,
    /// A bid is by the hot bidder with probability `(r − 1) / r`.
    pub hot_bidder_ratio: u64,
    /// Auctions a cold bid chooses among (the latest ones).
    pub num_in_flight_auctions: u64,
    /// People a cold bid or auction chooses among (the latest ones).
    pub num_active_people: u64,
    /// The fraction of events whose `dateTime` is moved back.
    pub prob_delayed_event: f64,
    /// The largest such move, milliseconds.
    pub max_delay_ms: i64,
    /// The random seed.
    pub seed: u64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            events: 100_000,
            event_rate: 10_000_000,
            base_time_ms: DEFAULT_BASE_TIME_MS,
            hot_auction_ratio: 2,
            hot_seller_ratio: 4,
            hot_bidder_ratio: 4,
            num_in_flight_auctions: 100,
            num_active_people: 1000,
            prob_delayed_event: 0.1,
            max_delay_ms: 3000,
            seed: 0,
        }
    }
}

impl GeneratorConfig {
    /// Event `n`'s creation time before any delay: `base + ⌊n · 1000 / rate⌋` ms.
    pub fn event_time(&self, n: u64) -> i64 {
        let rate = self.event_rate.max(1);
        let offset = match n.checked_mul(1000) {
            Some(ms) => u128::from(ms / rate),
            None => u128::from(n) * 1000 / u128::from(rate),
        };
        self.base_time_ms
            .saturating_add(i64::try_from(offset).unwrap_or(i64::MAX))
    }

    /// Event `n`'s creation time in microseconds, before any delay: `base + n / rate`, the
    /// time [`event_time`](Self::event_time) floors to milliseconds. In a paced run (see
    /// [`pace`](super::pace)) it is the wall-clock moment the event is due.
    pub fn created_us(&self, n: u64) -> i64 {
        let rate = self.event_rate.max(1);
        let offset = match n.checked_mul(1_000_000) {
            Some(us) => u128::from(us / rate),
            None => u128::from(n) * 1_000_000 / u128::from(rate),
        };
        self.base_time_ms
            .saturating_mul(1000)
            .saturating_add(i64::try_from(offset).unwrap_or(i64::MAX))
    }
}

/// Event number `n` of the stream `cfg` describes (`n` may exceed `cfg.events`).
pub fn event(cfg: &GeneratorConfig, n: u64) -> Event {
    let mut rng = Rng::for_event(cfg.seed, n);
    let created = cfg.event_time(n);
    // The delay is drawn first, so the kind-specific draws never shift it.
    let delayed = rng.next_f64() < cfg.prob_delayed_event && cfg.max_delay_ms > 0;
    let delay = rng.below(cfg.max_delay_ms.max(1) as u64) as i64 + 1;
    let date_time = if delayed { created - delay } else { created };
    let offset = n % PROPORTION_DENOMINATOR;
    if offset < PERSON_PROPORTION {
        Event::Person(person(n, date_time, &mut rng))
    } else if offset < PERSON_PROPORTION + AUCTION_PROPORTION {
        Event::Auction(auction(cfg, n, created, date_time, &mut rng))
    } else {
        Event::Bid(bid(cfg, n, date_time, &mut rng))
    }
}

/// The generator: an iterator over the events of a [`GeneratorConfig`], or over one instance's
/// share of them ([`Generator::split`]).
#[derive(Clone, Debug)]
pub struct Generator {
    cfg: GeneratorConfig,
    next: u64,
    step: u64,
}

impl Generator {
    /// All `cfg.events` events, in event-number order.
    pub fn new(cfg: GeneratorConfig) -> Self {
        Self::split(cfg, 0, 1)
    }

    /// Instance `index` of `count`: event numbers `index, index + count, …` below `cfg.events`.
    /// The union over `index in 0..count` is exactly [`new`](Self::new)`(cfg)`'s events.
    ///
    /// # Panics
    ///
    /// If `count` is 0 or `index ≥ count`.
    pub fn split(cfg: GeneratorConfig, index: u64, count: u64) -> Self {
        assert!(
            index < count,
            "generator instance {index} of {count}: the index must be below the count"
        );
        // Build the shared tables now rather than inside the first timed batch.
        let _ = tables();
        Generator {
            cfg,
            next: index,
            step: count,
        }
    }

    /// The number of the next event this generator produces (below `cfg.events` unless it is
    /// done): its position, to resume it with [`resume_at`](Self::resume_at).
    pub fn next_number(&self) -> u64 {
        self.next
    }

    /// Moves this generator to event number `next`, one of its own (a
    /// [`next_number`](Self::next_number) saved from the same split), so it produces the events
    /// from there on.
    ///
    /// # Errors
    ///
    /// A message naming the split if `next` is not one of its event numbers.
    pub fn resume_at(&mut self, next: u64) -> Result<(), String> {
        let index = self.next % self.step;
        if next < self.next || next % self.step != index {
            return Err(format!(
                "event {next} is not a position of generator instance {index} of {}; \
                 restore with the parallelism the position was saved with",
                self.step
            ));
        }
        self.next = next;
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &GeneratorConfig {
        &self.cfg
    }

    /// Events this generator has yet to produce.
    pub fn remaining(&self) -> u64 {
        if self.next >= self.cfg.events {
            0
        } else {
            (self.cfg.events - self.next).div_ceil(self.step)
        }
    }

    /// The number of the next event this generator produces, if any is left.
    pub fn next_left(&self) -> Option<u64> {
        (self.next < self.cfg.events).then_some(self.next)
    }

    /// Appends up to `max` next events to `out`; returns how many it appended.
    pub fn fill(&mut self, out: &mut Vec<Event>, max: usize) -> usize {
        self.fill_below(out, max, u64::MAX)
    }

    /// Appends up to `max` next events numbered below `below` to `out` (the events due in a
    /// paced run); returns how many it appended.
    pub fn fill_below(&mut self, out: &mut Vec<Event>, max: usize, below: u64) -> usize {
        let end = self.cfg.events.min(below);
        let due = if self.next >= end {
            0
        } else {
            (end - self.next).div_ceil(self.step)
        };
        let n = due.min(max as u64) as usize;
        out.reserve(n);
        for _ in 0..n {
            out.push(event(&self.cfg, self.next));
            self.next += self.step;
        }
        n
    }
}

impl Iterator for Generator {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if self.next >= self.cfg.events {
            return None;
        }
        let e = event(&self.cfg, self.next);
        self.next += self.step;
        Some(e)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.remaining()).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Generator {}

// ---- ids ----------------------------------------------------------------------------------

/// The 0-based id of the latest person created at or before event `n`.
fn last_person(n: u64) -> u64 {
    let group = n / PROPORTION_DENOMINATOR;
    let offset = n % PROPORTION_DENOMINATOR;
    // Within the group, the persons come first; after them, the group's last person.
    let within = if offset < PERSON_PROPORTION {
        offset
    } else {
        PERSON_PROPORTION - 1
    };
    group * PERSON_PROPORTION + within
}

/// The 0-based id of the latest auction created at or before event `n` (for an auction event,
/// its own id). Before the first auction this is 0, the auction about to be created.
fn last_auction(n: u64) -> u64 {
    let group = n / PROPORTION_DENOMINATOR;
    let offset = n % PROPORTION_DENOMINATOR;
    if offset < PERSON_PROPORTION {
        // A person opens the group: the previous group's last auction.
        (group * AUCTION_PROPORTION).saturating_sub(1)
    } else if offset < PERSON_PROPORTION + AUCTION_PROPORTION {
        group * AUCTION_PROPORTION + offset - PERSON_PROPORTION
    } else {
        group * AUCTION_PROPORTION + AUCTION_PROPORTION - 1
    }
}

/// A cold person: uniform over the latest `num_active_people` people and `ID_LEAD` to come.
fn cold_person(cfg: &GeneratorConfig, n: u64, rng: &mut Rng) -> u64 {
    let people = last_person(n) + 1;
    let active = people.min(cfg.num_active_people.max(1));
    people - active + rng.below(active + ID_LEAD)
}

/// A cold auction: uniform over the latest `num_in_flight_auctions` auctions and `ID_LEAD` to come.
fn cold_auction(cfg: &GeneratorConfig, n: u64, rng: &mut Rng) -> u64 {
    let last = last_auction(n);
    let first = last.saturating_sub(cfg.num_in_flight_auctions);
    first + rng.below(last - first + 1 + ID_LEAD)
}

/// True with probability `(ratio − 1) / ratio`: the hot choice.
fn hot(ratio: u64, rng: &mut Rng) -> bool {
    rng.below(ratio.max(1)) > 0
}

// ---- events -------------------------------------------------------------------------------

fn person(n: u64, date_time: i64, rng: &mut Rng) -> Person {
    let t = tables();
    let mut name = String::with_capacity(16);
    name.push_str(FIRST_NAMES[rng.below(FIRST_NAMES.len() as u64) as usize]);
    name.push(' ');
    name.push_str(LAST_NAMES[rng.below(LAST_NAMES.len() as u64) as usize]);
    let mut email_address = String::with_capacity(16);
    email_address.push_str(t.word(rng, 7));
    email_address.push('@');
    email_address.push_str(t.word(rng, 5));
    email_address.push_str(".com");
    let mut credit_card = String::with_capacity(19);
    for group in 0..4 {
        if group > 0 {
            credit_card.push(' ');
        }
        let mut v = rng.below(10_000) as u32;
        let mut digits = [b'0'; 4];
        for d in digits.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        credit_card.extend(digits.iter().map(|&b| b as char));
    }
    let (city, state) = CITIES[rng.below(CITIES.len() as u64) as usize];
    let size = 8 + name.len() + email_address.len() + credit_card.len() + city.len() + state.len();
    let extra = t.extra(rng, size, AVG_PERSON_BYTES);
    Person {
        id: FIRST_PERSON_ID + last_person(n),
        name,
        email_address,
        credit_card,
        city: city.to_owned(),
        state: state.to_owned(),
        date_time,
        extra,
    }
}

fn auction(cfg: &GeneratorConfig, n: u64, created: i64, date_time: i64, rng: &mut Rng) -> Auction {
    let t = tables();
    let seller = if hot(cfg.hot_seller_ratio, rng) {
        last_person(n) / HOT_BLOCK * HOT_BLOCK
    } else {
        cold_person(cfg, n, rng)
    };
    let category = FIRST_CATEGORY_ID + rng.below(NUM_CATEGORIES);
    let initial_bid = price(rng);
    let reserve = initial_bid + price(rng);
    // The event time it takes to create `num_in_flight_auctions` more auctions.
    let ahead = cfg.num_in_flight_auctions * PROPORTION_DENOMINATOR / AUCTION_PROPORTION;
    let horizon = cfg.event_time(n + ahead) - created;
    let length = 1 + rng.below((horizon.max(0) as u64 * 2).max(1)) as i64;
    let item_name = t.word(rng, 20).to_owned();
    let description = t.word(rng, 100).to_owned();
    let size = 8 + item_name.len() + description.len() + 8 * 5;
    let extra = t.extra(rng, size, AVG_AUCTION_BYTES);
    Auction {
        id: FIRST_AUCTION_ID + last_auction(n),
        item_name,
        description,
        initial_bid,
        reserve,
        date_time,
        expires: date_time + length,
        seller: FIRST_PERSON_ID + seller,
        category,
        extra,
    }
}

fn bid(cfg: &GeneratorConfig, n: u64, date_time: i64, rng: &mut Rng) -> Bid {
    let t = tables();
    let auction = if hot(cfg.hot_auction_ratio, rng) {
        last_auction(n) / HOT_BLOCK * HOT_BLOCK
    } else {
        cold_auction(cfg, n, rng)
    };
    let bidder = if hot(cfg.hot_bidder_ratio, rng) {
        last_person(n) / HOT_BLOCK * HOT_BLOCK + 1
    } else {
        cold_person(cfg, n, rng)
    };
    let price = price(rng);
    let (channel, url) = if rng.below(HOT_CHANNELS_RATIO) > 0 {
        let (c, u) = HOT_CHANNELS[rng.below(HOT_CHANNELS.len() as u64) as usize];
        (c.to_owned(), u.to_owned())
    } else {
        t.channel(rng.below(NUM_CHANNELS))
    };
    let extra = t.extra(rng, 8 * 4, AVG_BID_BYTES);
    Bid {
        auction: FIRST_AUCTION_ID + auction,
        bidder: FIRST_PERSON_ID + bidder,
        price,
        channel,
        url,
        date_time,
        extra,
        created_us: cfg.created_us(n),
    }
}

/// `round(100 · 10^(6u))`: log-uniform over 100 … 100 000 000 (as `e^(6u·ln 10)`, cheaper
/// than a power; the argument is positive, so adding ½ and truncating rounds).
fn price(rng: &mut Rng) -> u64 {
    ((rng.next_f64() * (6.0 * std::f64::consts::LN_10)).exp() * 100.0 + 0.5) as u64
}

// ---- text ---------------------------------------------------------------------------------

const FIRST_NAMES: [&str; 12] = [
    "Ada", "Boris", "Carmen", "Dmitri", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas",
    "Keiko", "Lars",
];
const LAST_NAMES: [&str; 10] = [
    "Almeida", "Brandt", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Holm", "Ivanova",
    "Jensen",
];
/// Cities with their state; the states are the model's six (q3 selects `OR`, `ID` and `CA`).
const CITIES: [(&str, &str); 12] = [
    ("Phoenix", "AZ"),
    ("Tucson", "AZ"),
    ("Fresno", "CA"),
    ("Oakland", "CA"),
    ("Boise", "ID"),
    ("Nampa", "ID"),
    ("Eugene", "OR"),
    ("Salem", "OR"),
    ("Spokane", "WA"),
    ("Tacoma", "WA"),
    ("Casper", "WY"),
    ("Laramie", "WY"),
];
const HOT_CHANNELS: [(&str, &str); 4] = [
    (
        "Google",
        "https://www.nexmark.com/search/google/item.htm?query=1",
    ),
    (
        "Facebook",
        "https://www.nexmark.com/social/facebook/item.htm?query=1",
    ),
    (
        "Baidu",
        "https://www.nexmark.com/search/baidu/item.htm?query=1",
    ),
    (
        "Apple",
        "https://www.nexmark.com/store/apple/item.htm?query=1",
    ),
];

/// Letters and spaced text to cut strings from; built once.
struct Tables {
    /// Random lowercase letters (the `extra` padding).
    letters: String,
    /// Random lowercase letters with a space one time in 13 (names and descriptions).
    spaced: String,
}

const POOL_BYTES: usize = 1 << 16;

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut rng = Rng::for_event(0x6e65_786d_6172_6b21, 0);
        let letters: String = (0..POOL_BYTES)
            .map(|_| (b'a' + rng.below(26) as u8) as char)
            .collect();
        let spaced: String = (0..POOL_BYTES)
            .map(|_| {
                if rng.below(13) == 0 {
                    ' '
                } else {
                    (b'a' + rng.below(26) as u8) as char
                }
            })
            .collect();
        Tables { letters, spaced }
    })
}

impl Tables {
    /// Numbered channel `k`: `channel-k` and its URL, whose three path segments (3–7 letters
    /// each) are a function of `k`. Built on the spot: a table of 10 000 URLs would be read at
    /// random, one cache miss per bid.
    fn channel(&self, k: u64) -> (String, String) {
        let mut digits = [0u8; 20];
        let digits = decimal(k, &mut digits);
        let mut channel = String::with_capacity(8 + digits.len());
        channel.push_str("channel-");
        channel.push_str(digits);
        let mut url = String::with_capacity(80);
        url.push_str("https://www.nexmark.com/");
        let mut h = mix64(k ^ 0x6368_616e_6e65_6c73);
        for part in 0..3 {
            if part > 0 {
                url.push('/');
            }
            let len = 3 + (h % 5) as usize;
            h /= 5;
            let at = (h % (POOL_BYTES - 8) as u64) as usize;
            h = mix64(h);
            url.push_str(&self.letters[at..at + len]);
        }
        url.push_str("/item.htm?query=1&channel_id=");
        url.push_str(digits);
        (channel, url)
    }

    /// Spaced text of length `3 ..< max_len`, trimmed.
    fn word(&self, rng: &mut Rng, max_len: usize) -> &str {
        let len = 3 + rng.below((max_len - 3) as u64) as usize;
        let at = rng.below((POOL_BYTES - len) as u64) as usize;
        self.spaced[at..at + len].trim()
    }

    /// Padding bringing `size` to `avg` on average: length uniform in `[0.8 d, 1.2 d)` for
    /// `d = avg − size` (empty when `size ≥ avg`).
    fn extra(&self, rng: &mut Rng, size: usize, avg: usize) -> String {
        if size >= avg {
            return String::new();
        }
        let d = avg - size;
        let delta = (2 * d + 5) / 10; // round(0.2 d), halves up
        let len = d - delta
            + if delta == 0 {
                0
            } else {
                rng.below(2 * delta as u64) as usize
            };
        let at = rng.below((POOL_BYTES - len) as u64) as usize;
        self.letters[at..at + len].to_owned()
    }
}

/// `v` in decimal, written at the end of `buf`.
fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).unwrap_or_default()
}

// ---- randomness ---------------------------------------------------------------------------

/// SplitMix64 from a hashed `(seed, event number)`: cheap to seed, so every event has its own.
struct Rng {
    state: u64,
}

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    fn for_event(seed: u64, n: u64) -> Self {
        // Hash, so that neighbouring events' streams start far apart.
        Rng {
            state: mix64(mix64(seed ^ 0x5851_f42d_4c95_7f2d).wrapping_add(n.wrapping_mul(GAMMA))),
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix64(self.state)
    }

    /// Uniform in `0..n` (`n ≥ 1`), by multiply-shift.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests;
