/** Session labels: `brave-tiger-1234`, easy to say and to type. */
const ADJECTIVES = [
  "brave", "swift", "clever", "calm", "bold", "bright", "eager", "gentle", "happy", "jolly",
  "keen", "lively", "lucky", "mighty", "noble", "proud", "quick", "quiet", "rapid", "sharp",
  "shiny", "silent", "sunny", "tidy", "vivid", "warm", "wise", "witty", "zesty", "amber",
  "cosmic", "daring", "fancy", "fuzzy", "golden", "humble", "icy", "misty", "polite", "rustic",
];
const ANIMALS = [
  "tiger", "falcon", "dolphin", "otter", "panda", "fox", "wolf", "eagle", "koala", "lynx",
  "badger", "beaver", "bison", "camel", "crane", "gecko", "heron", "ibex", "jaguar", "lemur",
  "llama", "marten", "moose", "newt", "ocelot", "orca", "owl", "puffin", "quokka", "raven",
  "robin", "seal", "shark", "sloth", "swan", "tapir", "toucan", "walrus", "yak", "zebra",
];

const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)] as T;

export function randomLabel(): string {
  const digits = String(Math.floor(Math.random() * 10_000)).padStart(4, "0");
  return `${pick(ADJECTIVES)}-${pick(ANIMALS)}-${digits}`;
}
