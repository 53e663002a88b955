"""The synthetic engine's sentences: generic advice, a small bank per known topic, and templates
naming any other topic. Each sentence is one token (a *segment*) of the engine's vocabulary."""

from __future__ import annotations

GENERIC_PHRASES: tuple[str, ...] = (
    "Here is a short answer.",
    "Set a clear goal first.",
    "Start small and stay consistent.",
    "Track your progress as you go.",
    "Ask for feedback when you get stuck.",
    "Be patient with yourself.",
)

TOPIC_PHRASES: dict[str, tuple[str, ...]] = {
    "music": (
        "Practice scales slowly every day.",
        "Learn a song you love by ear.",
        "Play along with a metronome.",
        "Record yourself and listen back.",
    ),
    "cooking": (
        "Read the whole recipe before you start.",
        "Prepare every ingredient in advance.",
        "Taste as you cook and adjust the seasoning.",
        "Keep your knives sharp.",
    ),
    "fitness": (
        "Warm up for ten minutes first.",
        "Mix strength and cardio during the week.",
        "Rest well between hard workouts.",
        "Drink water before and after exercise.",
    ),
    "travel": (
        "Book flights a few weeks ahead.",
        "Pack light and bring layers.",
        "Keep copies of your documents.",
        "Learn a few local phrases.",
    ),
    "finance": (
        "Write down a monthly budget.",
        "Build an emergency fund first.",
        "Pay off high-interest debt early.",
        "Invest regularly in low-cost funds.",
    ),
    "technology": (
        "Keep your software up to date.",
        "Back up your files regularly.",
        "Use a password manager.",
        "Restart the device before deeper fixes.",
    ),
    "language": (
        "Learn the most common words first.",
        "Speak with native speakers often.",
        "Review vocabulary with flashcards.",
        "Watch shows with subtitles.",
    ),
    "privacy": (
        "Turn on two-factor authentication.",
        "Use a different password for every account.",
        "Review the privacy settings of your apps.",
        "Avoid logging in on public networks.",
    ),
    "pets": (
        "Keep a regular feeding schedule.",
        "Reward good behaviour right away.",
        "Take your pet for yearly checkups.",
        "Give your pet daily exercise.",
    ),
    "education": (
        "Study in short focused sessions.",
        "Explain the idea in your own words.",
        "Work through practice problems.",
        "Review your notes the next day.",
    ),
    "home": (
        "Fix small problems before they grow.",
        "Keep a basic toolkit at hand.",
        "Declutter one room at a time.",
        "Check the smoke alarms twice a year.",
    ),
    "gardening": (
        "Check how much sun each spot gets.",
        "Water deeply but not too often.",
        "Improve the soil with compost.",
        "Start with easy plants.",
    ),
}

TOPIC_TEMPLATES: tuple[str, ...] = (
    "Learn the basics of {topic} first.",
    "Practice {topic} a little every day.",
    "Follow one good {topic} guide.",
    "Try a simple {topic} example today.",
)


def topic_label(topic: str) -> str:
    """A topic as the sentences name it ("home_repair" -> "home repair")."""
    return topic.replace("_", " ").strip()
