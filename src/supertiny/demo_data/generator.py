"""Seeded generator of the demo dataset: a home-and-car voice assistant.

It writes the project's embedded default data (read through ``conf/base/catalog.yml``):

* ``demo_tools.json``: a JSON list of 30 OpenAI tool schemas
  (``{"type": "function", "function": {"name", "description", "parameters"}}``);
* ``demo_requests.jsonl``: one request per line, with exactly these fields::

      {"id": "demo-00001", "messages": [{"role": "user", "content": "..."}],
       "tools": ["set_lights", ...], "reference": [{"name": ..., "arguments": {...}}],
       "template": "set_lights/03", "intent": "set_lights"}

  ``tools`` names the tools offered to the request (the relevant ones plus 3-5 distractors,
  shuffled); ``reference`` is the gold list of calls (``[]`` when no call is needed);
  ``template`` is the phrasing template the row came from and ``intent`` its stratum: the
  function name for single-call templates, ``parallel`` for multi-call templates and
  ``no_call`` for chit-chat, out-of-scope and missing-value templates
  (``no_call/chitchat-03``, ``no_call/out_of_scope-05``, ``no_call/missing_value-01``).

Regenerate (the same seed and count give byte-identical files)::

    PYTHONPATH=src python -m supertiny.demo_data.generator --seed 0 --out data/01_raw

Annotation conventions, which every gold label follows:

* arguments hold what the user said plus the required ones; an optional argument the user
  did not mention is omitted (``unit`` only when a unit was said, ``app`` only when an app
  was named, ...); a request missing a required value gets no call;
* free-text values (contacts, messages, destinations, items, labels, artists, songs,
  playlists, places) are the exact substring of the user's text;
* enum values are canonical (``living room`` and ``lounge`` -> ``living_room``); times are
  ``HH:MM`` on 24 hours; timer durations are seconds and do-not-disturb durations minutes
  (``an hour and a half`` -> 5400 s / 90 min); temperatures are numbers in the unit said;
  numbers said in words are numbers (``twenty one degrees`` -> 21);
* blinds and seat heating are positions / levels (``close the blinds`` -> position 0,
  ``turn off the seat heating`` -> level 0).

Surface noise (politeness, fillers, casing, end punctuation, a seeded letter swap or drop in
about 8% of rows) never touches the slot values.  Only the standard library is used.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

DEFAULT_SEED = 0
DEFAULT_COUNT = 2400
DEFAULT_OUT = "data/01_raw"
TOOLS_FILE = "demo_tools.json"
REQUESTS_FILE = "demo_requests.jsonl"

PARALLEL_SHARE = 0.175
NO_CALL_SHARE = 0.14
TYPO_RATE = 0.085  # chance of a typo attempt; a few rows have no word to misspell
MIN_DISTRACTORS, MAX_DISTRACTORS = 3, 5
NO_CALL_KINDS = ("chitchat", "out_of_scope", "missing_value")

# ============================================================================ tool schemas
# The schemas and the vocabularies below stay code, not data files: the schemas share pieces
# (``_tool``, ``_time``, ``UNIT``, ``ROOMS``) that the templates' slots use as well, and each
# vocabulary maps a surface form to the canonical value its schema's enum holds, which the
# templates read as they build a reference. Kept together, a renamed enum value fails at
# generation (``_arguments``) instead of drifting from a data file.

ROOMS = [
    "living_room", "kitchen", "bedroom", "bathroom", "office", "hallway",
    "dining_room", "kids_room", "guest_room", "garage", "basement",
]
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
TIME_PATTERN = "^([01][0-9]|2[0-3]):[0-5][0-9]$"
UNIT = {
    "type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius",
    "description": "Unit of the temperature.",
}


def _tool(name: str, description: str, properties: dict, required: list[str]) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
    }


def _time(description: str) -> dict:
    return {"type": "string", "pattern": TIME_PATTERN, "description": description}


TOOLS: list[dict] = [
    # ---- home
    _tool("set_lights", "Turn the lights in a room on or off, optionally at a given brightness.", {
        "room": {"type": "string", "enum": ROOMS + ["all"], "description": "Room whose lights to switch; 'all' for every room."},
        "state": {"type": "string", "enum": ["on", "off"], "description": "Switch the lights on or off."},
        "brightness": {"type": "integer", "minimum": 1, "maximum": 100, "default": 100, "description": "Brightness in percent when switching on."},
    }, ["room", "state"]),
    _tool("set_light_color", "Change the colour of the smart lights in a room.", {
        "room": {"type": "string", "enum": ROOMS + ["all"], "description": "Room whose lights to recolour; 'all' for every room."},
        "color": {"type": "string", "enum": ["warm_white", "cool_white", "red", "orange", "yellow", "green", "blue", "purple", "pink"], "description": "Light colour."},
    }, ["room", "color"]),
    _tool("set_thermostat", "Set the target temperature of the home heating and cooling.", {
        "temperature": {"type": "number", "minimum": 10, "maximum": 90, "description": "Target temperature in the given unit."},
        "unit": UNIT,
        "room": {"type": "string", "enum": ROOMS, "description": "Room (zone) to set; omit for the whole home."},
    }, ["temperature"]),
    _tool("set_hvac_mode", "Switch the home climate system to a mode, or off.", {
        "mode": {"type": "string", "enum": ["heat", "cool", "auto", "fan_only", "dry", "eco", "off"], "description": "Climate mode."},
    }, ["mode"]),
    _tool("set_blinds", "Move the blinds of a room to a position.", {
        "room": {"type": "string", "enum": ROOMS, "description": "Room whose blinds to move."},
        "position": {"type": "integer", "minimum": 0, "maximum": 100, "description": "Openness in percent: 0 = fully closed, 100 = fully open."},
    }, ["room", "position"]),
    _tool("set_door_lock", "Lock or unlock a door of the house.", {
        "door": {"type": "string", "enum": ["front", "back", "patio", "side"], "description": "Which door."},
        "locked": {"type": "boolean", "description": "true to lock, false to unlock."},
    }, ["door", "locked"]),
    _tool("set_garage_door", "Open or close the garage door.", {
        "action": {"type": "string", "enum": ["open", "close"], "description": "Open or close."},
    }, ["action"]),
    _tool("start_vacuum", "Start the robot vacuum cleaner.", {
        "room": {"type": "string", "enum": ROOMS, "description": "Room to clean; omit to clean the whole home."},
        "mode": {"type": "string", "enum": ["quiet", "standard", "turbo"], "default": "standard", "description": "Suction mode."},
    }, []),
    # ---- media
    _tool("play_music", "Play music by song, artist, genre or playlist.", {
        "song": {"type": "string", "description": "Song title."},
        "artist": {"type": "string", "description": "Artist or band."},
        "genre": {"type": "string", "enum": ["pop", "rock", "jazz", "classical", "hip_hop", "country", "electronic", "lofi", "blues", "reggae"], "description": "Music genre."},
        "playlist": {"type": "string", "description": "Name of one of the user's playlists."},
        "source": {"type": "string", "enum": ["spotify", "apple_music", "youtube_music", "deezer"], "default": "spotify", "description": "Streaming service."},
        "shuffle": {"type": "boolean", "default": False, "description": "Play in random order."},
    }, []),
    _tool("media_control", "Control the music that is playing.", {
        "action": {"type": "string", "enum": ["pause", "resume", "next", "previous", "stop"], "description": "Playback action."},
    }, ["action"]),
    _tool("set_volume", "Set the speaker volume.", {
        "level": {"type": "integer", "minimum": 0, "maximum": 100, "description": "Volume in percent."},
    }, ["level"]),
    # ---- car
    _tool("navigate_to", "Start turn-by-turn navigation to a destination.", {
        "destination": {"type": "string", "description": "Address or place name."},
        "avoid_tolls": {"type": "boolean", "default": False, "description": "Avoid toll roads."},
        "avoid_highways": {"type": "boolean", "default": False, "description": "Avoid highways."},
    }, ["destination"]),
    _tool("find_nearby", "Find places of a category near the car.", {
        "category": {"type": "string", "enum": ["gas_station", "charging_station", "parking", "restaurant", "coffee_shop", "pharmacy", "supermarket", "hospital"], "description": "Kind of place."},
        "open_now": {"type": "boolean", "default": False, "description": "Only places open now."},
        "max_distance_km": {"type": "integer", "minimum": 1, "maximum": 50, "default": 10, "description": "Search radius in kilometres."},
    }, ["category"]),
    _tool("set_car_windows", "Open, close or vent the car windows.", {
        "window": {"type": "string", "enum": ["all", "driver", "passenger", "rear_left", "rear_right"], "description": "Which window; 'all' for every window."},
        "action": {"type": "string", "enum": ["open", "close", "vent"], "description": "open fully, close, or vent (open a crack)."},
    }, ["window", "action"]),
    _tool("set_car_lock", "Lock or unlock the car.", {
        "locked": {"type": "boolean", "description": "true to lock, false to unlock."},
    }, ["locked"]),
    _tool("set_seat_heating", "Set the seat heating of a car seat.", {
        "seat": {"type": "string", "enum": ["driver", "passenger", "rear_left", "rear_right"], "description": "Which seat."},
        "level": {"type": "integer", "minimum": 0, "maximum": 3, "default": 2, "description": "Heating level: 0 = off, 1 = low, 2 = medium, 3 = high."},
    }, ["seat"]),
    _tool("start_charging", "Start charging the car's battery.", {
        "limit_percent": {"type": "integer", "minimum": 50, "maximum": 100, "default": 80, "description": "Stop charging at this battery level in percent."},
    }, []),
    _tool("stop_charging", "Stop charging the car's battery.", {}, []),
    _tool("precondition_cabin", "Heat or cool the car cabin before driving.", {
        "temperature": {"type": "number", "minimum": 10, "maximum": 90, "description": "Target cabin temperature in the given unit."},
        "unit": UNIT,
        "start_time": _time("When to start, HH:MM on 24 hours; omit to start now."),
    }, []),
    _tool("check_vehicle_status", "Report one reading of the car's status.", {
        "item": {"type": "string", "enum": ["battery", "range", "tire_pressure", "oil_life", "odometer", "locks"], "description": "What to report."},
    }, ["item"]),
    # ---- communication
    _tool("make_call", "Phone a contact.", {
        "contact": {"type": "string", "description": "Contact name as said by the user."},
        "number_type": {"type": "string", "enum": ["mobile", "home", "work"], "default": "mobile", "description": "Which of the contact's numbers."},
    }, ["contact"]),
    _tool("send_message", "Send a text message to a contact.", {
        "contact": {"type": "string", "description": "Contact name as said by the user."},
        "message": {"type": "string", "description": "Text of the message."},
        "app": {"type": "string", "enum": ["sms", "whatsapp", "telegram", "signal"], "default": "sms", "description": "Messaging app."},
    }, ["contact", "message"]),
    _tool("set_do_not_disturb", "Turn do not disturb on or off.", {
        "enabled": {"type": "boolean", "description": "true to silence notifications, false to allow them."},
        "duration_minutes": {"type": "integer", "minimum": 5, "maximum": 720, "description": "How long to stay on, in minutes; omit for until turned off."},
    }, ["enabled"]),
    # ---- time
    _tool("set_timer", "Start a countdown timer.", {
        "duration_seconds": {"type": "integer", "minimum": 1, "maximum": 86400, "description": "Duration in seconds."},
        "label": {"type": "string", "description": "Name of the timer."},
    }, ["duration_seconds"]),
    _tool("cancel_timer", "Cancel a running timer.", {
        "label": {"type": "string", "description": "Name of the timer to cancel; omit for the current timer."},
    }, []),
    _tool("set_alarm", "Set a wake-up alarm.", {
        "time": _time("Alarm time, HH:MM on 24 hours."),
        "days": {"type": "array", "items": {"type": "string", "enum": WEEKDAYS}, "minItems": 1, "uniqueItems": True, "description": "Days on which the alarm repeats, in week order; omit for a one-time alarm."},
        "label": {"type": "string", "description": "Name of the alarm."},
    }, ["time"]),
    _tool("set_reminder", "Remind the user of something at a time.", {
        "text": {"type": "string", "description": "What to remind the user of."},
        "time": _time("Reminder time, HH:MM on 24 hours."),
        "day": {"type": "string", "enum": ["today", "tomorrow"], "default": "today", "description": "Which day."},
    }, ["text", "time"]),
    # ---- shopping
    _tool("add_to_shopping_list", "Add an item to the shopping list.", {
        "item": {"type": "string", "description": "Item to buy."},
        "quantity": {"type": "integer", "minimum": 1, "maximum": 99, "default": 1, "description": "How many."},
    }, ["item"]),
    _tool("remove_from_shopping_list", "Remove an item from the shopping list.", {
        "item": {"type": "string", "description": "Item to remove."},
    }, ["item"]),
    # ---- information
    _tool("get_weather", "Get the weather forecast.", {
        "location": {"type": "string", "description": "City or place; omit for the current location."},
        "day": {"type": "string", "enum": ["today", "tomorrow", "weekend"], "default": "today", "description": "Which day."},
    }, []),
]
TOOL_NAMES = [tool["function"]["name"] for tool in TOOLS]
_PROPERTIES = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}

# Tools easily confused with each other: one of them is often offered as a distractor.
_CONFUSABLE = [
    {"set_lights", "set_light_color"},
    {"set_thermostat", "set_hvac_mode", "precondition_cabin"},
    {"set_door_lock", "set_car_lock", "set_garage_door"},
    {"set_car_lock", "check_vehicle_status"},
    {"play_music", "media_control", "set_volume"},
    {"make_call", "send_message"},
    {"set_timer", "cancel_timer", "set_alarm", "set_reminder"},
    {"add_to_shopping_list", "remove_from_shopping_list"},
    {"start_charging", "stop_charging", "check_vehicle_status"},
    {"set_blinds", "set_car_windows"},
    {"navigate_to", "find_nearby"},
    {"set_seat_heating", "precondition_cabin"},
    {"set_do_not_disturb", "set_alarm"},
]
SIBLINGS = {name: sorted({s for group in _CONFUSABLE if name in group for s in group} - {name}) for name in TOOL_NAMES}

# ============================================================================ slot values

ROOM_WORDS = {
    "living_room": ["living room", "lounge"], "kitchen": ["kitchen"], "bedroom": ["bedroom"],
    "bathroom": ["bathroom"], "office": ["office", "study"], "hallway": ["hallway", "hall"],
    "dining_room": ["dining room"], "kids_room": ["kids' room", "kids room"],
    "guest_room": ["guest room"], "garage": ["garage"], "basement": ["basement"],
}
NO_BLINDS = ("garage", "basement", "hallway")
COLORS = {
    "warm_white": ["warm white"], "cool_white": ["cool white"], "red": ["red"], "orange": ["orange"],
    "yellow": ["yellow"], "green": ["green"], "blue": ["blue"], "purple": ["purple", "violet"], "pink": ["pink"],
}
HVAC_MODES = {
    "heat": ["heat", "heating"], "cool": ["cool", "cooling"], "auto": ["auto", "automatic"],
    "fan_only": ["fan only", "fan-only"], "dry": ["dry", "dehumidify"], "eco": ["eco", "energy saving"],
    "off": ["off"],
}
DOORS = {"front": ["front door"], "back": ["back door"], "patio": ["patio door", "sliding door"], "side": ["side door"]}
VACUUM_MODES = {"quiet": ["quiet", "silent"], "standard": ["standard", "normal"], "turbo": ["turbo", "max power"]}
GENRES = {
    "pop": ["pop"], "rock": ["rock"], "jazz": ["jazz"], "classical": ["classical", "classical music"],
    "hip_hop": ["hip hop", "hip-hop"], "country": ["country"], "electronic": ["electronic", "electronic music"],
    "lofi": ["lo-fi", "lofi"], "blues": ["blues"], "reggae": ["reggae"],
}
SOURCES = {"spotify": ["Spotify"], "apple_music": ["Apple Music"], "youtube_music": ["YouTube Music"], "deezer": ["Deezer"]}
SONGS = [
    ("Bohemian Rhapsody", "Queen"), ("Shake It Off", "Taylor Swift"), ("Yellow", "Coldplay"),
    ("So What", "Miles Davis"), ("Get Lucky", "Daft Punk"), ("Dreams", "Fleetwood Mac"),
    ("Hello", "Adele"), ("Here Comes the Sun", "The Beatles"), ("Bad Guy", "Billie Eilish"),
    ("Humble", "Kendrick Lamar"), ("Karma Police", "Radiohead"), ("Shape of You", "Ed Sheeran"),
    ("Halo", "Beyoncé"), ("Don't Know Why", "Norah Jones"), ("Alors on danse", "Stromae"),
    ("Tití Me Preguntó", "Bad Bunny"), ("Jolene", "Dolly Parton"), ("Redbone", "Childish Gambino"),
]
ARTISTS = sorted({artist for _, artist in SONGS} | {"Nina Simone", "Bob Marley", "Arctic Monkeys", "Rosalía"})
PLAYLISTS = ["Morning Commute", "Chill Vibes", "Road Trip", "Workout Mix", "Dinner Party", "Deep Focus", "Sunday Morning", "Throwbacks"]
DESTINATIONS = [
    "Union Station", "JFK Airport", "Central Park", "450 Market Street", "221B Baker Street",
    "Lincoln High School", "Lake Tahoe", "Portland", "Seattle", "Pier 39", "1200 Oak Street",
    "Denver International Airport", "Riverside Mall", "St. Mary's Hospital", "Grandma's house",
    "the Golden Gate Bridge", "Fisherman's Wharf", "Stanford University", "Napa Valley",
]
CITIES = ["Lisbon", "Chicago", "Tokyo", "Berlin", "Austin", "Vancouver", "São Paulo", "Cape Town", "Denver", "Madrid", "Boston", "Melbourne", "Dublin", "Paris"]
CATEGORIES = {  # value -> (singular forms, plural forms), aligned
    "gas_station": (["gas station", "petrol station"], ["gas stations", "petrol stations"]),
    "charging_station": (["charging station", "EV charger"], ["charging stations", "EV chargers"]),
    "parking": (["parking garage", "parking lot", "place to park"], ["parking garages", "parking lots", "places to park"]),
    "restaurant": (["restaurant", "place to eat"], ["restaurants", "places to eat"]),
    "coffee_shop": (["coffee shop", "café"], ["coffee shops", "cafés"]),
    "pharmacy": (["pharmacy", "drugstore"], ["pharmacies", "drugstores"]),
    "supermarket": (["supermarket", "grocery store"], ["supermarkets", "grocery stores"]),
    "hospital": (["hospital", "emergency room"], ["hospitals", "emergency rooms"]),
}
CONTACTS = [
    "Mom", "Dad", "Grandma", "Anna", "Ben", "Carlos", "Priya", "Sophie", "Liam", "Olivia Chen",
    "Marcus", "Aunt Linda", "Dr. Patel", "Jake", "Emma", "Noah", "Fatima", "Kenji", "Sarah Miller",
    "Tom", "José", "Zoë", "Uncle Rob", "Mei", "David Okafor",
]
STATEMENTS = [  # statements without " and ": they read well after "that", "know", "saying" or ":"
    "I'm running ten minutes late", "I'll be home by seven", "dinner is in the oven",
    "the meeting got moved to Thursday", "I just parked outside", "we're out of milk",
    "I'll call you back after the meeting", "the kids are asleep", "I left the keys under the mat",
    "traffic is terrible so start without me", "I'm stuck in traffic", "the package arrived",
    "I'm on my way", "the door code changed",
]
MESSAGES = STATEMENTS + [  # after ":", "saying" or in quotes only
    "can you pick me up at the station", "happy birthday", "don't wait up for me", "call me when you land",
    "good luck today",
]
MASS_ITEMS = [
    "milk", "oat milk", "coffee beans", "olive oil", "toilet paper", "dish soap", "bread", "butter",
    "rice", "peanut butter", "cat food", "paper towels", "Greek yogurt", "orange juice", "flour",
    "sparkling water", "laundry detergent", "cheddar cheese",
]
COUNT_ITEMS = [
    "avocados", "lemons", "bananas", "onions", "tomatoes", "bagels", "lightbulbs", "batteries",
    "apples", "cucumbers", "bell peppers", "croissants",
]
REMINDERS = [
    "call the dentist", "take out the trash", "pick up the dry cleaning", "water the plants",
    "book a haircut", "pay the electricity bill", "move the car", "take my medication",
    "email the landlord", "buy flowers for Sarah", "check the oven", "feed the cat",
    "renew my passport", "pick up the kids", "charge my laptop",
]
TIMER_LABELS = ["pasta", "eggs", "laundry", "pizza", "tea", "bread", "rice", "cookies", "roast", "potatoes"]
ALARM_LABELS = ["gym", "work", "flight", "school run", "medication", "yoga"]
TIMER_SECONDS = [20, 30, 45, 60, 90, 120, 150, 180, 240, 300, 360, 420, 480, 600, 720, 900, 1200,
                 1500, 1800, 2400, 2700, 3600, 4500, 5400, 7200, 9000, 10800]
DND_MINUTES = [15, 20, 30, 45, 60, 90, 120, 180, 240]
ALARM_HOURS = [4, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 8, 8, 9, 10, 11, 13, 14, 15, 22, 23]
WAKE_HOURS = [4, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 8, 8, 9, 10, 11]
DAY_HOURS = [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22]
CAR_HOURS = [5, 6, 6, 7, 7, 7, 8, 8, 9, 16, 17, 17, 18]
MINUTES = [0, 0, 0, 0, 0, 15, 30, 30, 45, 10, 20, 40, 50, 5]
WINDOWS = {
    "all": ["all the windows", "all windows", "every window"],
    "driver": ["the driver's window", "the driver window", "the driver side window"],
    "passenger": ["the passenger window", "the passenger side window"],
    "rear_left": ["the rear left window", "the back left window"],
    "rear_right": ["the rear right window", "the back right window"],
}
SEATS = {
    "driver": ["driver's seat", "driver seat"], "passenger": ["passenger seat"],
    "rear_left": ["rear left seat", "back left seat"], "rear_right": ["rear right seat", "back right seat"],
}
HEAT_LEVELS = {1: ["low", "level 1", "level one"], 2: ["medium", "level 2", "level two"], 3: ["high", "max", "maximum", "level 3", "level three"]}
NUMBER_TYPES = {"mobile": ["mobile", "cell"], "home": ["home"], "work": ["work", "office"]}
PHONES = {"mobile": ["mobile", "cell phone", "cell"], "home": ["home phone", "landline"], "work": ["work phone", "office line"]}
APPS = {"whatsapp": ["WhatsApp"], "telegram": ["Telegram"], "signal": ["Signal"]}
APP_MESSAGES = {"sms": ["SMS", "SMS message"], "whatsapp": ["WhatsApp", "WhatsApp message"], "telegram": ["Telegram message"], "signal": ["Signal message"]}
VEHICLE_ITEMS = {
    "battery": ["battery level", "charge level", "state of charge"], "range": ["range", "remaining range"],
    "tire_pressure": ["tire pressure", "tyre pressure"], "oil_life": ["oil life"],
    "odometer": ["odometer reading"], "locks": ["lock status"],
}
WEATHER_DAYS = {"today": ["today"], "tomorrow": ["tomorrow"], "weekend": ["this weekend", "over the weekend"]}
DND = ["do not disturb", "Do Not Disturb", "DND"]
_D = [day.capitalize() for day in WEEKDAYS]
DAY_SETS = [
    (["every weekday", "on weekdays", "Monday to Friday", "from Monday to Friday"], WEEKDAYS[:5]),
    (["on weekends", "every weekend", "on Saturdays and Sundays"], WEEKDAYS[5:]),
    (["every day", "daily", "every single day"], WEEKDAYS),
    *[([f"every {name}", f"on {name}s"], [day]) for name, day in zip(_D, WEEKDAYS)],
    *[([f"on {_D[a]}s and {_D[b]}s", f"every {_D[a]} and {_D[b]}"], [WEEKDAYS[a], WEEKDAYS[b]]) for a, b in ((0, 2), (1, 3), (0, 4), (2, 4), (5, 6))],
]

# ============================================================================ surfaces

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int, hyphen: bool = False) -> str:
    """0..100 in English words (``21`` -> ``twenty one`` or ``twenty-one``)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] if ones == 0 else _TENS[tens] + ("-" if hyphen else " ") + _ONES[ones]
    if n == 100:
        return "one hundred"
    raise ValueError(n)


W = number_words


def time_surfaces(hour: int, minute: int) -> list[str]:
    """Unambiguous ways of saying a clock time (never a bare 12-hour time without am/pm)."""
    if (hour, minute) == (12, 0):
        return ["noon", "12 pm", "midday", "twelve noon"]
    if (hour, minute) == (0, 0):
        return ["midnight", "12 am"]
    h12 = hour % 12 or 12
    ap = "am" if hour < 12 else "pm"
    dots = "a.m." if hour < 12 else "p.m."
    out = []
    if minute == 0:
        out += [f"{h12} {ap}", f"{h12}{ap}", f"{h12} {dots}", f"{h12} {ap.upper()}", f"{h12}:00 {ap}", f"{W(h12)} {ap}"]
    else:
        spoken = f"oh {W(minute)}" if minute < 10 else W(minute)
        out += [f"{h12}:{minute:02d} {ap}", f"{h12}:{minute:02d}{ap}", f"{h12}:{minute:02d} {ap.upper()}", f"{W(h12)} {spoken} {ap}"]
    if hour != 0:
        period = ("in the morning" if hour < 12 else "in the afternoon" if hour < 17
                  else "in the evening" if hour < 21 else "at night")
        if minute == 0:
            out += [f"{W(h12)} o'clock {period}", f"{h12} {period}"]
        elif minute == 30:
            out.append(f"half past {W(h12)} {period}")
        elif minute == 15:
            out.append(f"quarter past {W(h12)} {period}")
        elif minute == 45 and h12 not in (11, 12):
            out.append(f"quarter to {W(h12 + 1)} {period}")
        else:
            out.append(f"{h12}:{minute:02d} {period}")
    if hour >= 13 or hour < 10:
        out.append(f"{hour:02d}:{minute:02d}")
    return out


def duration_surfaces(seconds: int) -> list[str]:
    """Ways of saying a duration (``5400`` -> ``an hour and a half``, ``90 minutes``, ...)."""
    if seconds < 60:
        return [f"{seconds} seconds", f"{W(seconds)} seconds", f"{seconds} secs"]
    minutes, rest = divmod(seconds, 60)
    if seconds < 3600:
        if rest == 0:
            if minutes == 1:
                return ["a minute", "one minute", "1 minute", "60 seconds"]
            out = [f"{minutes} minutes", f"{W(minutes)} minutes", f"{minutes} mins", f"{minutes} min"]
            out += {15: ["a quarter of an hour", "quarter of an hour"], 30: ["half an hour", "half hour"],
                    45: ["three quarters of an hour"]}.get(minutes, [])
            return out
        if rest == 30:
            if minutes == 1:
                return ["a minute and a half", "one and a half minutes", "90 seconds", "1.5 minutes"]
            return [f"{W(minutes)} and a half minutes", f"{minutes} and a half minutes",
                    f"{minutes} minutes and 30 seconds", f"{minutes}.5 minutes"]
        raise ValueError(seconds)
    hours, rest = divmod(seconds, 3600)
    if rest % 60:
        raise ValueError(seconds)
    rest_minutes = rest // 60
    said = ["an hour", "one hour", "1 hour"] if hours == 1 else [f"{hours} hours", f"{W(hours)} hours"]
    if rest_minutes == 0:
        return said + ([f"{minutes} minutes"] if minutes <= 120 else [])
    if rest_minutes == 30:
        whole = "one" if hours == 1 else W(hours)
        return [f"{s} and a half" for s in said] + [f"{hours}.5 hours", f"{whole} and a half hours", f"{minutes} minutes"]
    out = [f"{s} and {rest_minutes} minutes" for s in said] + [f"{minutes} minutes"]
    if rest_minutes == 15:
        out += [f"{s} and a quarter" for s in said]
    return out


# ============================================================================ templates

_OPEN, _MID, _CLOSE = "\x01", "\x02", "\x03"
_SLOT = re.compile("\x01(\\d+)\x02(.*?)\x03", re.S)


class Slot:
    """A value said in the text: formatting it into a template marks its span, which the
    noise never touches; a verbatim slot's value is its final text (after casing)."""

    __slots__ = ("index", "text", "value", "verbatim", "final")

    def __init__(self, index: int, text: str, value: Any, verbatim: bool):
        self.index, self.text, self.value, self.verbatim, self.final = index, text, value, verbatim, text

    def __format__(self, spec: str) -> str:
        return f"{_OPEN}{self.index}{_MID}{self.text}{_CLOSE}"

    def __str__(self) -> str:
        return self.__format__("")


class Ctx:
    """What a template draws from: seeded choices and slots."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.slots: list[Slot] = []

    def slot(self, text: str, value: Any = None, verbatim: bool = False) -> Slot:
        slot = Slot(len(self.slots), text, value, verbatim)
        self.slots.append(slot)
        return slot

    def free(self, text: str) -> Slot:
        """A free-text value, copied from the text into the reference."""
        return self.slot(text, None, verbatim=True)

    def frees(self, pool: list[str], k: int) -> list[Slot]:
        return [self.free(text) for text in self.rng.sample(pool, k)]

    def lit(self, *options: str) -> str:
        return self.rng.choice(options)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def one(self, table: dict, value: Any = None, exclude=(), only=None) -> Slot:
        if value is None:
            value = self.rng.choice([k for k in table if k not in exclude and (only is None or k in only)])
        return self.slot(self.rng.choice(table[value]), value)

    def several(self, table: dict, k: int, exclude=()) -> list[Slot]:
        values = self.rng.sample([key for key in table if key not in exclude], k)
        return [self.one(table, value) for value in values]

    def choice(self, *pairs: tuple[str, Any]) -> Slot:
        """One of (text, value) pairs, as a slot."""
        text, value = self.rng.choice(pairs)
        return self.slot(text, value)

    def room(self, exclude=()) -> Slot:
        return self.one(ROOM_WORDS, exclude=exclude)

    def number(self, n: int, words: float = 0.3) -> Slot:
        return self.slot(W(n, self.chance(0.3)) if self.chance(words) else str(n), n)

    def percent(self, n: int) -> Slot:
        return self.slot(self.lit(f"{n}%", f"{n} percent", f"{W(n, self.chance(0.3))} percent", f"{n} per cent"), n)

    def temperature(self, celsius=(17, 26), fahrenheit=(62, 78), style: str | None = None) -> Slot:
        """Value ``(number, unit or None)``: the unit only when the user said one."""
        style = style or self.lit("implicit", "implicit", "celsius", "celsius", "fahrenheit", "fahrenheit", "fahrenheit")
        if style == "fahrenheit":
            v = self.rng.randint(*fahrenheit)
            text = self.lit(f"{v} degrees fahrenheit", f"{v} degrees Fahrenheit", f"{v}°F", f"{v} °F", f"{v}F", f"{W(v)} degrees fahrenheit")
            return self.slot(text, (v, "fahrenheit"))
        v = self.rng.randint(*celsius)
        if self.chance(0.15):
            number, digits, words = v + 0.5, f"{v}.5", f"{W(v)} and a half"
        else:
            number, digits, words = v, str(v), W(v, self.chance(0.3))
        if style == "implicit":
            return self.slot(self.lit(f"{digits} degrees", f"{words} degrees", f"{digits}°"), (number, None))
        text = self.lit(f"{digits} degrees celsius", f"{digits} degrees Celsius", f"{digits}°C", f"{digits} °C", f"{words} degrees celsius", f"{digits} degrees C")
        return self.slot(text, (number, "celsius"))

    def time(self, hours=DAY_HOURS, exclude: tuple[str, ...] = ()) -> Slot:
        while True:
            hour, minute = self.rng.choice(hours), self.rng.choice(MINUTES)
            value = f"{hour:02d}:{minute:02d}"
            if value not in exclude:
                return self.slot(self.rng.choice(time_surfaces(hour, minute)), value)

    def duration(self, pool=TIMER_SECONDS) -> Slot:
        seconds = self.rng.choice(pool)
        return self.slot(self.rng.choice(duration_surfaces(seconds)), seconds)

    def minutes(self, pool=DND_MINUTES) -> Slot:
        minutes = self.rng.choice(pool)
        return self.slot(self.rng.choice(duration_surfaces(minutes * 60)), minutes)

    def days(self) -> Slot:
        texts, days = self.rng.choice(DAY_SETS)
        return self.slot(self.rng.choice(texts), list(days))

    def category(self, plural: bool = False, only=None) -> Slot:
        value = self.rng.choice([k for k in CATEGORIES if only is None or k in only])
        return self.slot(self.rng.choice(CATEGORIES[value][1 if plural else 0]), value)


def a(slot: Slot) -> str:
    """The indefinite article for a slot's text."""
    return "an" if slot.text[:1].lower() in "aeiou" or slot.text.startswith("SMS") else "a"


def call(name: str, **arguments: Any) -> dict:
    return {"name": name, "arguments": arguments}


def temp_args(slot: Slot, key: str = "temperature") -> dict:
    number, unit = slot.value
    return {key: number, **({"unit": unit} if unit else {})}


@dataclass(frozen=True)
class Template:
    """A phrasing template: ``build(ctx) -> (text with slots, calls)``."""

    id: str
    intent: str  # a function name, "parallel" or "no_call"
    kind: str  # single | parallel | chitchat | out_of_scope | missing_value
    style: str  # imp (verb first: takes "could you ..."), other, terse
    build: Callable[[Ctx], tuple[str, list[dict]]]
    target: tuple[str, ...] = ()  # missing_value: the tool the request is for (always offered)
    near: tuple[str, ...] = ()  # out_of_scope: tempting tools always offered as distractors


TEMPLATES: list[Template] = []


def template(tid: str, intent: str, style: str = "imp", kind: str | None = None, target=(), near=()):
    """Register a template under its own id (``set_lights/03``, ``no_call/chitchat-02``): the id
    is the group the data step splits by, so it is written out, never derived from the order
    of registration, and a template added later renames no other."""
    kind = kind or ("parallel" if intent == "parallel" else "single")
    key = f"no_call/{kind}" if intent == "no_call" else intent
    if not re.fullmatch(rf"{re.escape(key)}[/-][0-9]+", tid):
        raise AssertionError(f"template id {tid!r} must be {key}/NN (no_call: no_call/<kind>-NN)")
    if any(t.id == tid for t in TEMPLATES):
        raise AssertionError(f"template id {tid!r} is used twice")

    def register(build):
        TEMPLATES.append(Template(tid, intent, kind, style, build, tuple(target), tuple(near)))
        return build

    return register


# ---------------------------------------------------------------------------- set_lights
ON_OFF = {"on": ["on"], "off": ["off"]}


@template("set_lights/01", "set_lights")
def _(c):
    state, room = c.one(ON_OFF), c.room()
    return f"{c.lit('turn', 'switch')} {state} the lights in the {room}", [call("set_lights", room=room, state=state)]


@template("set_lights/02", "set_lights", style="terse")
def _(c):
    room, state = c.room(), c.one(ON_OFF)
    return f"{room} {c.lit('lights', 'light')} {state}", [call("set_lights", room=room, state=state)]


@template("set_lights/03", "set_lights", style="other")
def _(c):
    room = c.room()
    lead = c.lit("it's too dark", "it's really dark", "I can barely see anything")
    verb = c.lit("turn the lights on", "switch the lights on", "put the lights on")
    return f"{lead} in the {room}, can you {verb}?", [call("set_lights", room=room, state="on")]


@template("set_lights/04", "set_lights")
def _(c):
    room, level = c.room(), c.percent(c.rng.choice([10, 15, 20, 25, 30, 40, 50]))
    return f"dim the {room} lights to {level}", [call("set_lights", room=room, state="on", brightness=level)]


@template("set_lights/05", "set_lights")
def _(c):
    room, level = c.room(), c.percent(c.rng.choice(range(10, 101, 10)))
    return f"set the brightness in the {room} to {level}", [call("set_lights", room=room, state="on", brightness=level)]


@template("set_lights/06", "set_lights")
def _(c):
    state = c.one(ON_OFF)
    every = c.lit("every light in the house is", "all the lights are", "all the lights in the house are")
    return f"make sure {every} {state}", [call("set_lights", room="all", state=state)]


# ---------------------------------------------------------------------------- set_light_color
@template("set_light_color/01", "set_light_color")
def _(c):
    room, color = c.room(), c.one(COLORS)
    return f"{c.lit('change', 'switch')} the {room} lights to {color}", [call("set_light_color", room=room, color=color)]


@template("set_light_color/02", "set_light_color")
def _(c):
    room, color = c.room(), c.one(COLORS)
    return f"make the lights in the {room} {color}", [call("set_light_color", room=room, color=color)]


@template("set_light_color/03", "set_light_color")
def _(c):
    room, color = c.room(), c.one(COLORS)
    return f"set the {room} lighting {c.lit('color', 'colour')} to {color}", [call("set_light_color", room=room, color=color)]


@template("set_light_color/04", "set_light_color", style="other")
def _(c):
    room, color = c.room(), c.one(COLORS)
    return f"{c.lit('I want', 'I would like', 'I feel like')} {color} light in the {room}", [call("set_light_color", room=room, color=color)]


@template("set_light_color/05", "set_light_color")
def _(c):
    room, color = c.room(), c.one(COLORS)
    return f"turn the {room} lamps {color}", [call("set_light_color", room=room, color=color)]


@template("set_light_color/06", "set_light_color", style="other")
def _(c):
    room, color = c.room(), c.one(COLORS)
    return f"can the {room} lights go {color}?", [call("set_light_color", room=room, color=color)]


# ---------------------------------------------------------------------------- set_thermostat
@template("set_thermostat/01", "set_thermostat")
def _(c):
    t = c.temperature()
    return f"set the thermostat to {t}", [call("set_thermostat", **temp_args(t))]


@template("set_thermostat/02", "set_thermostat")
def _(c):
    room, t = c.room(exclude=("garage",)), c.temperature()
    return f"{c.lit('change', 'set')} the temperature in the {room} to {t}", [call("set_thermostat", **temp_args(t), room=room)]


@template("set_thermostat/03", "set_thermostat", style="other")
def _(c):
    t = c.temperature()
    lead = c.lit("I'm freezing", "it's chilly in here", "brr, it's cold")
    return f"{lead}, can you bump the heat up to {t}?", [call("set_thermostat", **temp_args(t))]


@template("set_thermostat/04", "set_thermostat")
def _(c):
    t = c.temperature()
    return f"make it {t} in here", [call("set_thermostat", **temp_args(t))]


@template("set_thermostat/05", "set_thermostat")
def _(c):
    room, t = c.room(exclude=("garage",)), c.temperature()
    return f"{c.lit('heat', 'warm')} the {room} to {t}", [call("set_thermostat", **temp_args(t), room=room)]


@template("set_thermostat/06", "set_thermostat", style="other")
def _(c):
    room, t = c.room(exclude=("garage",)), c.temperature()
    return f"{c.lit('I would like', 'I want', 'I need')} the {room} at {t}", [call("set_thermostat", **temp_args(t), room=room)]


# ---------------------------------------------------------------------------- set_hvac_mode
@template("set_hvac_mode/01", "set_hvac_mode")
def _(c):
    mode = c.one(HVAC_MODES, exclude=("off",))
    return f"switch the climate system to {mode} mode", [call("set_hvac_mode", mode=mode)]


@template("set_hvac_mode/02", "set_hvac_mode")
def _(c):
    mode = c.one(HVAC_MODES, exclude=("off",))
    return f"put the {c.lit('HVAC', 'climate control')} on {mode}", [call("set_hvac_mode", mode=mode)]


@template("set_hvac_mode/03", "set_hvac_mode")
def _(c):
    action = c.choice(
        ("turn on the heating", "heat"), ("turn the heating on", "heat"), ("turn on the air conditioning", "cool"),
        ("switch on the AC", "cool"), ("turn off the heating", "off"), ("turn the AC off", "off"),
        ("shut off the air conditioning", "off"),
    )
    return f"{action}", [call("set_hvac_mode", mode=action)]


@template("set_hvac_mode/04", "set_hvac_mode", style="other")
def _(c):
    mode = c.one(HVAC_MODES)
    return f"can you change the climate mode to {mode}?", [call("set_hvac_mode", mode=mode)]


@template("set_hvac_mode/05", "set_hvac_mode")
def _(c):
    mode = c.one(HVAC_MODES)
    return f"set the thermostat mode to {mode}", [call("set_hvac_mode", mode=mode)]


@template("set_hvac_mode/06", "set_hvac_mode", style="other")
def _(c):
    mode = c.one(HVAC_MODES, exclude=("off",))
    return f"I want the heat pump in {mode} mode", [call("set_hvac_mode", mode=mode)]


# ---------------------------------------------------------------------------- set_blinds
@template("set_blinds/01", "set_blinds")
def _(c):
    action, room = c.choice(("open", 100), ("close", 0)), c.room(exclude=NO_BLINDS)
    return f"{action} the {room} {c.lit('blinds', 'shades')}", [call("set_blinds", room=room, position=action)]


@template("set_blinds/02", "set_blinds")
def _(c):
    action, room = c.choice(("lower", 0), ("raise", 100)), c.room(exclude=NO_BLINDS)
    return f"{action} the blinds in the {room}", [call("set_blinds", room=room, position=action)]


@template("set_blinds/03", "set_blinds")
def _(c):
    room, half = c.room(exclude=NO_BLINDS), c.slot(c.lit("halfway", "half way"), 50)
    return f"open the {room} {c.lit('blinds', 'shades')} {half}", [call("set_blinds", room=room, position=half)]


@template("set_blinds/04", "set_blinds")
def _(c):
    room, level = c.room(exclude=NO_BLINDS), c.percent(c.rng.choice(range(10, 100, 10)))
    return f"set the {room} blinds to {level} open", [call("set_blinds", room=room, position=level)]


@template("set_blinds/05", "set_blinds", style="other")
def _(c):
    room = c.room(exclude=NO_BLINDS)
    lead = c.lit("the sun is in my eyes", "there's way too much glare", "the neighbours can see in")
    return f"{lead}, close the {room} blinds", [call("set_blinds", room=room, position=0)]


@template("set_blinds/06", "set_blinds", style="other")
def _(c):
    direction, room = c.choice(("up", 100), ("down", 0)), c.room(exclude=NO_BLINDS)
    return f"can you pull {direction} the {room} shades?", [call("set_blinds", room=room, position=direction)]


# ---------------------------------------------------------------------------- set_door_lock
LOCK = (("lock", True), ("unlock", False))


@template("set_door_lock/01", "set_door_lock")
def _(c):
    lock, door = c.choice(*LOCK), c.one(DOORS)
    return f"{lock} the {door}", [call("set_door_lock", door=door, locked=lock)]


@template("set_door_lock/02", "set_door_lock", style="other")
def _(c):
    door = c.one(DOORS)
    return f"did I leave the {door} unlocked? {c.lit('lock it', 'please lock it', 'lock it if so')}", [call("set_door_lock", door=door, locked=True)]


@template("set_door_lock/03", "set_door_lock")
def _(c):
    who, door = c.free(c.rng.choice(CONTACTS)), c.one(DOORS)
    return f"let {who} in, unlock the {door}", [call("set_door_lock", door=door, locked=False)]


@template("set_door_lock/04", "set_door_lock")
def _(c):
    door = c.one(DOORS)
    return f"make sure the {door} is locked", [call("set_door_lock", door=door, locked=True)]


@template("set_door_lock/05", "set_door_lock")
def _(c):
    door = c.one(DOORS)
    return f"{c.lit('secure', 'bolt')} the {door}", [call("set_door_lock", door=door, locked=True)]


@template("set_door_lock/06", "set_door_lock", style="other")
def _(c):
    door = c.one(DOORS)
    lead = c.lit("I'm expecting a delivery", "the cleaner is here", "my friends just arrived")
    return f"{lead}, can you unlock the {door}?", [call("set_door_lock", door=door, locked=False)]


# ---------------------------------------------------------------------------- set_garage_door
@template("set_garage_door/01", "set_garage_door")
def _(c):
    action = c.choice(("open", "open"), ("close", "close"))
    return f"{action} the garage door", [call("set_garage_door", action=action)]


@template("set_garage_door/02", "set_garage_door", style="other")
def _(c):
    lead = c.lit("I'm pulling into the driveway", "I'm almost home", "I just got home")
    return f"{lead}, open the garage", [call("set_garage_door", action="open")]


@template("set_garage_door/03", "set_garage_door")
def _(c):
    direction = c.choice(("up", "open"), ("down", "close"))
    return f"put the garage door {direction}", [call("set_garage_door", action=direction)]


@template("set_garage_door/04", "set_garage_door", style="other")
def _(c):
    return f"did I leave the garage open? {c.lit('close it', 'shut it', 'close it please')}", [call("set_garage_door", action="close")]


@template("set_garage_door/05", "set_garage_door", style="other")
def _(c):
    action = c.choice(("raise", "open"), ("lower", "close"))
    return f"can you {action} the garage door?", [call("set_garage_door", action=action)]


# ---------------------------------------------------------------------------- start_vacuum
@template("start_vacuum/01", "start_vacuum")
def _(c):
    room = c.room()
    return f"vacuum the {room}", [call("start_vacuum", room=room)]


@template("start_vacuum/02", "start_vacuum")
def _(c):
    return c.lit("start the robot vacuum", "run the vacuum cleaner", "start the vacuum", "get the robot vacuum going"), [call("start_vacuum")]


@template("start_vacuum/03", "start_vacuum")
def _(c):
    mode = c.one(VACUUM_MODES)
    return f"run the {c.lit('vacuum', 'robot vacuum')} in {mode} mode", [call("start_vacuum", mode=mode)]


@template("start_vacuum/04", "start_vacuum", style="other")
def _(c):
    room, mode = c.room(), c.one(VACUUM_MODES)
    return f"the {room} floor is a mess, send the robot vacuum in there on {mode}", [call("start_vacuum", room=room, mode=mode)]


@template("start_vacuum/05", "start_vacuum")
def _(c):
    room = c.room()
    return f"have the robot vacuum clean the {room}", [call("start_vacuum", room=room)]


@template("start_vacuum/06", "start_vacuum", style="other")
def _(c):
    room = c.room()
    mess = c.lit("I spilled crumbs all over", "the dog shed everywhere in", "there's sand all over")
    return f"{mess} the {room}, start vacuuming", [call("start_vacuum", room=room)]


# ---------------------------------------------------------------------------- play_music
@template("play_music/01", "play_music")
def _(c):
    song, artist = SONGS[c.rng.randrange(len(SONGS))]
    song, artist = c.free(song), c.free(artist)
    return f"play {song} by {artist}", [call("play_music", song=song, artist=artist)]


@template("play_music/02", "play_music")
def _(c):
    genre = c.one(GENRES)
    return f"put on some {genre}", [call("play_music", genre=genre)]


@template("play_music/03", "play_music")
def _(c):
    playlist = c.free(c.rng.choice(PLAYLISTS))
    return f"play my {playlist} playlist", [call("play_music", playlist=playlist)]


@template("play_music/04", "play_music")
def _(c):
    artist, source = c.free(c.rng.choice(ARTISTS)), c.one(SOURCES)
    return f"play {artist} on {source}", [call("play_music", artist=artist, source=source)]


@template("play_music/05", "play_music")
def _(c):
    artist = c.free(c.rng.choice(ARTISTS))
    return f"shuffle {c.lit('songs by', 'some', 'music by')} {artist}", [call("play_music", artist=artist, shuffle=True)]


@template("play_music/06", "play_music", style="other")
def _(c):
    song = c.free(c.rng.choice(SONGS)[0])
    return f"I {c.lit('want', 'would love', 'need')} to hear {song}", [call("play_music", song=song)]


@template("play_music/07", "play_music", style="other")
def _(c):
    genre, source = c.one(GENRES), c.one(SOURCES)
    return f"I'm in the mood for some {genre} on {source}", [call("play_music", genre=genre, source=source)]


@template("play_music/08", "play_music")
def _(c):
    return c.lit("play some music", "put some music on", "play something"), [call("play_music")]


# ---------------------------------------------------------------------------- media_control
@template("media_control/01", "media_control")
def _(c):
    action = c.choice(("pause", "pause"), ("stop", "stop"), ("resume", "resume"))
    return f"{action} the {c.lit('music', 'song', 'playback')}", [call("media_control", action=action)]


@template("media_control/02", "media_control")
def _(c):
    return f"skip this {c.lit('song', 'track', 'one')}", [call("media_control", action="next")]


@template("media_control/03", "media_control")
def _(c):
    return f"go back to the previous {c.lit('song', 'track')}", [call("media_control", action="previous")]


@template("media_control/04", "media_control", style="other")
def _(c):
    return f"{c.lit('I hate this song', 'ugh, not this song', 'this song is terrible')}, skip it", [call("media_control", action="next")]


@template("media_control/05", "media_control", style="other")
def _(c):
    verb = c.lit("unpause", "resume", "continue")
    return f"can you {verb} the {c.lit('music', 'song')}?", [call("media_control", action="resume")]


@template("media_control/06", "media_control")
def _(c):
    return f"play the {c.lit('last', 'previous')} {c.lit('song', 'track')} again", [call("media_control", action="previous")]


@template("media_control/07", "media_control", style="terse")
def _(c):
    return c.lit("next track", "next song", "next"), [call("media_control", action="next")]


# ---------------------------------------------------------------------------- set_volume
VOLUMES = list(range(5, 101, 5))


@template("set_volume/01", "set_volume")
def _(c):
    level = c.number(c.rng.choice(VOLUMES))
    return f"set the volume to {level}", [call("set_volume", level=level)]


@template("set_volume/02", "set_volume")
def _(c):
    level = c.number(c.rng.choice(VOLUMES))
    return f"turn the volume {'up' if level.value >= 50 else 'down'} to {level}", [call("set_volume", level=level)]


@template("set_volume/03", "set_volume", style="terse")
def _(c):
    level = c.number(c.rng.choice(VOLUMES))
    return f"volume {level}", [call("set_volume", level=level)]


@template("set_volume/04", "set_volume", style="other")
def _(c):
    level = c.number(c.rng.choice(VOLUMES[:8]))
    return f"{c.lit('it is too loud', 'that is way too loud', 'too loud')}, bring it down to {level}", [call("set_volume", level=level)]


@template("set_volume/05", "set_volume")
def _(c):
    level = c.percent(c.rng.choice(VOLUMES))
    return f"change the {c.lit('speaker', 'music', 'car')} volume to {level}", [call("set_volume", level=level)]


@template("set_volume/06", "set_volume", style="other")
def _(c):
    level = c.number(c.rng.choice(VOLUMES))
    return f"can you make the volume {level} percent?", [call("set_volume", level=level)]


# ---------------------------------------------------------------------------- navigate_to
@template("navigate_to/01", "navigate_to")
def _(c):
    dest = c.free(c.rng.choice(DESTINATIONS))
    return f"navigate to {dest}", [call("navigate_to", destination=dest)]


@template("navigate_to/02", "navigate_to")
def _(c):
    dest = c.free(c.rng.choice(DESTINATIONS))
    if c.chance(0.5):
        avoid = c.slot(c.lit(", avoiding tolls", " and avoid tolls", ", no tolls please"), True)
        return f"take me to {dest}{avoid}", [call("navigate_to", destination=dest, avoid_tolls=avoid)]
    return f"take me to {dest}", [call("navigate_to", destination=dest)]


@template("navigate_to/03", "navigate_to")
def _(c):
    dest = c.free(c.rng.choice(DESTINATIONS))
    return f"get me directions to {dest}", [call("navigate_to", destination=dest)]


@template("navigate_to/04", "navigate_to", style="other")
def _(c):
    dest = c.free(c.rng.choice(DESTINATIONS))
    avoid = c.slot(c.lit("without taking the highway", "but avoid highways", "and I don't want highways"), True)
    return f"I need to get to {dest} {avoid}", [call("navigate_to", destination=dest, avoid_highways=avoid)]


@template("navigate_to/05", "navigate_to")
def _(c):
    dest = c.free(c.rng.choice(DESTINATIONS))
    avoid = c.slot(c.lit("avoid tolls and highways", "no tolls and no highways", "stay off highways and toll roads"), True)
    return f"start route guidance to {dest}, {avoid}", [call("navigate_to", destination=dest, avoid_tolls=avoid, avoid_highways=avoid)]


@template("navigate_to/06", "navigate_to", style="other")
def _(c):
    dest = c.free(c.rng.choice(DESTINATIONS))
    lead = c.lit("let's drive to", "let's head to", "we're going to")
    return f"{lead} {dest}", [call("navigate_to", destination=dest)]


# ---------------------------------------------------------------------------- find_nearby
OPEN_NOW = ("open now", "open right now", "still open")


@template("find_nearby/01", "find_nearby")
def _(c):
    cat = c.category()
    return f"find {a(cat)} {cat} {c.lit('nearby', 'near me', 'close by')}", [call("find_nearby", category=cat)]


@template("find_nearby/02", "find_nearby", style="other")
def _(c):
    cat = c.category()
    return f"where's the {c.lit('nearest', 'closest')} {cat}?", [call("find_nearby", category=cat)]


@template("find_nearby/03", "find_nearby")
def _(c):
    cat, now = c.category(), c.slot(c.lit(*OPEN_NOW), True)
    return f"look for {a(cat)} {cat} that's {now}", [call("find_nearby", category=cat, open_now=now)]


@template("find_nearby/04", "find_nearby", style="other")
def _(c):
    cat, km = c.category(), c.number(c.rng.randint(1, 20))
    return f"is there {a(cat)} {cat} within {km} {c.lit('kilometers', 'km', 'kilometres')}?", [call("find_nearby", category=cat, max_distance_km=km)]


@template("find_nearby/05", "find_nearby", style="other")
def _(c):
    cat = c.category(plural=True)
    return f"{c.lit('any', 'are there any')} {cat} around here?", [call("find_nearby", category=cat)]


@template("find_nearby/06", "find_nearby")
def _(c):
    cat, km, now = c.category(plural=True), c.number(c.rng.randint(1, 20)), c.slot(c.lit(*OPEN_NOW), True)
    return f"search for {cat} within {km} km that are {now}", [call("find_nearby", category=cat, open_now=now, max_distance_km=km)]


# ---------------------------------------------------------------------------- set_car_windows
@template("set_car_windows/01", "set_car_windows")
def _(c):
    action, window = c.choice(("open", "open"), ("close", "close")), c.one(WINDOWS)
    return f"{action} {window}", [call("set_car_windows", window=window, action=action)]


@template("set_car_windows/02", "set_car_windows")
def _(c):
    window = c.one(WINDOWS)
    return f"{c.lit('crack', 'crack open')} {window}", [call("set_car_windows", window=window, action="vent")]


@template("set_car_windows/03", "set_car_windows")
def _(c):
    direction, window = c.choice(("up", "close"), ("down", "open")), c.one(WINDOWS)
    return f"roll {direction} {window}", [call("set_car_windows", window=window, action=direction)]


@template("set_car_windows/04", "set_car_windows", style="other")
def _(c):
    window = c.one(WINDOWS)
    return f"it's {c.lit('stuffy', 'so stuffy', 'a bit stuffy')} in here, can you vent {window}?", [call("set_car_windows", window=window, action="vent")]


@template("set_car_windows/05", "set_car_windows", style="other")
def _(c):
    window = c.one(WINDOWS)
    lead = c.lit("it's starting to rain", "we're getting on the highway", "it's getting cold")
    return f"{lead}, close {window}", [call("set_car_windows", window=window, action="close")]


@template("set_car_windows/06", "set_car_windows", style="other")
def _(c):
    window = c.one(WINDOWS)
    return f"can you shut {window}?", [call("set_car_windows", window=window, action="close")]


# ---------------------------------------------------------------------------- set_car_lock
@template("set_car_lock/01", "set_car_lock")
def _(c):
    lock = c.choice(*LOCK)
    return f"{lock} {c.lit('the car', 'my car', 'the car doors')}", [call("set_car_lock", locked=lock)]


@template("set_car_lock/02", "set_car_lock", style="other")
def _(c):
    return f"did I lock the car? {c.lit('lock it', 'lock it please', 'if not, lock it')}", [call("set_car_lock", locked=True)]


@template("set_car_lock/03", "set_car_lock", style="other")
def _(c):
    lead = c.lit("I'm at the car", "I'm standing next to the car", "I'm back at the car")
    return f"{lead}, unlock it", [call("set_car_lock", locked=False)]


@template("set_car_lock/04", "set_car_lock")
def _(c):
    return c.lit("secure the vehicle", "lock up the car", "lock the vehicle"), [call("set_car_lock", locked=True)]


@template("set_car_lock/05", "set_car_lock", style="other")
def _(c):
    who = c.free(c.rng.choice(CONTACTS))
    return f"{who} needs something from the car, can you unlock it?", [call("set_car_lock", locked=False)]


# ---------------------------------------------------------------------------- set_seat_heating
@template("set_seat_heating/01", "set_seat_heating")
def _(c):
    seat = c.one(SEATS)
    return f"turn on the {seat} {c.lit('heater', 'heating')}", [call("set_seat_heating", seat=seat)]


@template("set_seat_heating/02", "set_seat_heating")
def _(c):
    seat, level = c.one(SEATS), c.one(HEAT_LEVELS)
    return f"set the {seat} heating to {level}", [call("set_seat_heating", seat=seat, level=level)]


@template("set_seat_heating/03", "set_seat_heating")
def _(c):
    seat = c.one(SEATS)
    return f"switch off the heated {seat}", [call("set_seat_heating", seat=seat, level=0)]


@template("set_seat_heating/04", "set_seat_heating", style="other")
def _(c):
    who, seat = c.free(c.rng.choice(CONTACTS)), c.one(SEATS, exclude=("driver",))
    return f"{who} is cold, warm up the {seat}", [call("set_seat_heating", seat=seat)]


@template("set_seat_heating/05", "set_seat_heating", style="terse")
def _(c):
    seat, level = c.one(SEATS), c.one(HEAT_LEVELS)
    return f"{seat} heat {level}", [call("set_seat_heating", seat=seat, level=level)]


@template("set_seat_heating/06", "set_seat_heating")
def _(c):
    seat, level = c.one(SEATS), c.one(HEAT_LEVELS, value=3)
    return f"crank the seat heater for the {seat} up to {level}", [call("set_seat_heating", seat=seat, level=level)]


# ---------------------------------------------------------------------------- start_charging
CHARGE_LIMITS = list(range(50, 101, 5))


@template("start_charging/01", "start_charging")
def _(c):
    return c.lit("start charging the car", "start charging", "begin charging"), [call("start_charging")]


@template("start_charging/02", "start_charging")
def _(c):
    limit = c.percent(c.rng.choice(CHARGE_LIMITS))
    return f"charge the car to {limit}", [call("start_charging", limit_percent=limit)]


@template("start_charging/03", "start_charging", style="other")
def _(c):
    limit = c.percent(c.rng.choice(CHARGE_LIMITS))
    return f"I'm plugged in, charge up to {limit}", [call("start_charging", limit_percent=limit)]


@template("start_charging/04", "start_charging", style="other")
def _(c):
    return c.lit("can you start a charging session?", "can we start charging now?", "could the car start charging?"), [call("start_charging")]


@template("start_charging/05", "start_charging")
def _(c):
    limit = c.percent(c.rng.choice(CHARGE_LIMITS))
    return f"top up the battery to {limit}", [call("start_charging", limit_percent=limit)]


@template("start_charging/06", "start_charging", style="other")
def _(c):
    limit = c.percent(c.rng.choice(CHARGE_LIMITS))
    return f"I need the car at {limit} by {c.lit('morning', 'tomorrow', 'the weekend')}, start charging", [call("start_charging", limit_percent=limit)]


# ---------------------------------------------------------------------------- stop_charging
@template("stop_charging/01", "stop_charging")
def _(c):
    return c.lit("stop charging", "stop charging the car", "stop the charging"), [call("stop_charging")]


@template("stop_charging/02", "stop_charging")
def _(c):
    return c.lit("end the charging session", "end charging", "end the charge"), [call("stop_charging")]


@template("stop_charging/03", "stop_charging", style="other")
def _(c):
    return f"{c.lit('I need to leave now', 'I am heading out', 'I am about to unplug')}, stop charging", [call("stop_charging")]


@template("stop_charging/04", "stop_charging")
def _(c):
    return c.lit("cancel charging", "cancel the charge", "cancel the charging session"), [call("stop_charging")]


@template("stop_charging/05", "stop_charging", style="other")
def _(c):
    return c.lit("can you halt the charging?", "can you pause charging?", "could you halt charging the car?"), [call("stop_charging")]


# ---------------------------------------------------------------------------- precondition_cabin
CAR_C, CAR_F = (18, 24), (64, 76)


@template("precondition_cabin/01", "precondition_cabin")
def _(c):
    return c.lit("warm up the car", "preheat the car", "precondition the car", "get the car warmed up"), [call("precondition_cabin")]


@template("precondition_cabin/02", "precondition_cabin")
def _(c):
    t = c.temperature(CAR_C, CAR_F)
    return f"{c.lit('precondition the cabin', 'preheat the car', 'precondition the car')} to {t}", [call("precondition_cabin", **temp_args(t))]


@template("precondition_cabin/03", "precondition_cabin")
def _(c):
    time = c.time(CAR_HOURS)
    return f"{c.lit('start heating the car', 'start warming up the car', 'preheat the car')} at {time}", [call("precondition_cabin", start_time=time)]


@template("precondition_cabin/04", "precondition_cabin", style="other")
def _(c):
    t = c.temperature(CAR_C, CAR_F)
    lead = c.lit("it's freezing outside", "it's icy out there", "it's so cold today")
    return f"{lead}, preheat the cabin to {t}", [call("precondition_cabin", **temp_args(t))]


@template("precondition_cabin/05", "precondition_cabin")
def _(c):
    t, time = c.temperature(CAR_C, CAR_F), c.time(CAR_HOURS)
    return f"cool down the car to {t} at {time}", [call("precondition_cabin", **temp_args(t), start_time=time)]


@template("precondition_cabin/06", "precondition_cabin", style="other")
def _(c):
    time = c.time(CAR_HOURS)
    return f"can you get the car's climate going at {time}?", [call("precondition_cabin", start_time=time)]


# ---------------------------------------------------------------------------- check_vehicle_status
@template("check_vehicle_status/01", "check_vehicle_status", style="other")
def _(c):
    item = c.one(VEHICLE_ITEMS)
    return f"what's the car's {item}?", [call("check_vehicle_status", item=item)]


@template("check_vehicle_status/02", "check_vehicle_status")
def _(c):
    item = c.one(VEHICLE_ITEMS)
    return f"check the {item}", [call("check_vehicle_status", item=item)]


@template("check_vehicle_status/03", "check_vehicle_status", style="other")
def _(c):
    text = c.lit("how far can I drive before I need to charge?", "how many miles can I go on this charge?", "how far will the battery get me?")
    return text, [call("check_vehicle_status", item="range")]


@template("check_vehicle_status/04", "check_vehicle_status", style="other")
def _(c):
    return c.lit("is the car locked?", "did I lock my car?", "are the car doors locked?"), [call("check_vehicle_status", item="locks")]


@template("check_vehicle_status/05", "check_vehicle_status")
def _(c):
    item = c.one(VEHICLE_ITEMS)
    return f"tell me my car's {item}", [call("check_vehicle_status", item=item)]


@template("check_vehicle_status/06", "check_vehicle_status", style="other")
def _(c):
    return c.lit("how much battery do I have left?", "what's my battery at?", "how much charge is left?"), [call("check_vehicle_status", item="battery")]


@template("check_vehicle_status/07", "check_vehicle_status", style="other")
def _(c):
    return c.lit("do my tires need air?", "are my tyres okay?", "is my tire pressure low?"), [call("check_vehicle_status", item="tire_pressure")]


# ---------------------------------------------------------------------------- make_call
@template("make_call/01", "make_call")
def _(c):
    who = c.free(c.rng.choice(CONTACTS))
    return f"call {who}", [call("make_call", contact=who)]


@template("make_call/02", "make_call")
def _(c):
    who, kind = c.free(c.rng.choice(CONTACTS)), c.one(NUMBER_TYPES)
    return f"call {who}'s {kind} number", [call("make_call", contact=who, number_type=kind)]


@template("make_call/03", "make_call", style="other")
def _(c):
    who = c.free(c.rng.choice(CONTACTS))
    return f"can you get {who} on the phone?", [call("make_call", contact=who)]


@template("make_call/04", "make_call")
def _(c):
    who, where = c.free(c.rng.choice(CONTACTS)), c.choice(("home", "home"), ("work", "work"))
    return f"dial {who} at {where}", [call("make_call", contact=who, number_type=where)]


@template("make_call/05", "make_call", style="other")
def _(c):
    who = c.free(c.rng.choice(CONTACTS))
    return f"I need to talk to {who}, {c.lit('give them a call', 'ring them', 'call them')}", [call("make_call", contact=who)]


@template("make_call/06", "make_call")
def _(c):
    who, phone = c.free(c.rng.choice(CONTACTS)), c.one(PHONES)
    return f"phone {who} on their {phone}", [call("make_call", contact=who, number_type=phone)]


# ---------------------------------------------------------------------------- send_message
@template("send_message/01", "send_message")
def _(c):
    who, text = c.free(c.rng.choice(CONTACTS)), c.free(c.rng.choice(MESSAGES))
    return f"text {who} saying {text}", [call("send_message", contact=who, message=text)]


@template("send_message/02", "send_message")
def _(c):
    who, text = c.free(c.rng.choice(CONTACTS)), c.free(c.rng.choice(MESSAGES))
    return f"send {who} a message: {text}", [call("send_message", contact=who, message=text)]


@template("send_message/03", "send_message")
def _(c):
    who, text = c.free(c.rng.choice(CONTACTS)), c.free(c.rng.choice(STATEMENTS))
    return f"tell {who} that {text}", [call("send_message", contact=who, message=text)]


@template("send_message/04", "send_message")
def _(c):
    who, app, text = c.free(c.rng.choice(CONTACTS)), c.one(APPS), c.free(c.rng.choice(MESSAGES))
    return f"message {who} on {app}: {text}", [call("send_message", contact=who, message=text, app=app)]


@template("send_message/05", "send_message", style="other")
def _(c):
    who, text = c.free(c.rng.choice(CONTACTS)), c.free(c.rng.choice(STATEMENTS))
    return f"can you let {who} know {text}?", [call("send_message", contact=who, message=text)]


@template("send_message/06", "send_message")
def _(c):
    app, who, text = c.one(APP_MESSAGES), c.free(c.rng.choice(CONTACTS)), c.free(c.rng.choice(MESSAGES))
    return f'send {a(app)} {app} to {who} that says "{text}"', [call("send_message", contact=who, message=text, app=app)]


# ---------------------------------------------------------------------------- set_do_not_disturb
@template("set_do_not_disturb/01", "set_do_not_disturb")
def _(c):
    state = c.choice(("on", True), ("off", False))
    return f"turn {state} {c.lit(*DND)}", [call("set_do_not_disturb", enabled=state)]


@template("set_do_not_disturb/02", "set_do_not_disturb")
def _(c):
    span = c.minutes()
    return f"enable {c.lit(*DND)} for {span}", [call("set_do_not_disturb", enabled=True, duration_minutes=span)]


@template("set_do_not_disturb/03", "set_do_not_disturb", style="other")
def _(c):
    span = c.minutes()
    lead = c.lit("I'm going into a meeting", "I need to focus", "I'm about to take a nap")
    return f"{lead}, silence notifications for {span}", [call("set_do_not_disturb", enabled=True, duration_minutes=span)]


@template("set_do_not_disturb/04", "set_do_not_disturb", style="other")
def _(c):
    span = c.minutes()
    return f"don't let anyone {c.lit('disturb', 'bother')} me for {span}", [call("set_do_not_disturb", enabled=True, duration_minutes=span)]


@template("set_do_not_disturb/05", "set_do_not_disturb", style="other")
def _(c):
    text = c.lit("I'm out of my meeting, turn notifications back on", "my meeting is over, you can switch do not disturb off", "I'm done focusing, let notifications through again")
    return text, [call("set_do_not_disturb", enabled=False)]


@template("set_do_not_disturb/06", "set_do_not_disturb")
def _(c):
    return f"activate {c.lit(*DND)}", [call("set_do_not_disturb", enabled=True)]


# ---------------------------------------------------------------------------- set_timer
@template("set_timer/01", "set_timer")
def _(c):
    span = c.duration()
    return f"set a timer for {span}", [call("set_timer", duration_seconds=span)]


@template("set_timer/02", "set_timer")
def _(c):
    label, span = c.free(c.rng.choice(TIMER_LABELS)), c.duration()
    return f"set {a(label)} {label} timer for {span}", [call("set_timer", duration_seconds=span, label=label)]


@template("set_timer/03", "set_timer")
def _(c):
    n = c.rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 25, 30, 40, 45])
    said = c.slot(c.lit(f"{n} minute", f"{n}-minute", f"{W(n)} minute"), n * 60)
    return f"start a {said} timer", [call("set_timer", duration_seconds=said)]


@template("set_timer/04", "set_timer")
def _(c):
    span = c.duration()
    return f"start a countdown {c.lit('of', 'for')} {span}", [call("set_timer", duration_seconds=span)]


@template("set_timer/05", "set_timer", style="other")
def _(c):
    label, span = c.free(c.rng.choice(TIMER_LABELS)), c.duration(TIMER_SECONDS[4:])
    needs = "need" if label.text.endswith("s") else "needs"
    return f"the {label} {needs} {span}, can you time it?", [call("set_timer", duration_seconds=span, label=label)]


@template("set_timer/06", "set_timer", style="terse")
def _(c):
    span = c.duration()
    return f"timer{c.lit(', ', ' for ', ': ')}{span}", [call("set_timer", duration_seconds=span)]


# ---------------------------------------------------------------------------- cancel_timer
@template("cancel_timer/01", "cancel_timer")
def _(c):
    return f"cancel {c.lit('the', 'my')} timer", [call("cancel_timer")]


@template("cancel_timer/02", "cancel_timer")
def _(c):
    label = c.free(c.rng.choice(TIMER_LABELS))
    return f"cancel the {label} timer", [call("cancel_timer", label=label)]


@template("cancel_timer/03", "cancel_timer")
def _(c):
    return c.lit("kill the timer", "stop the timer", "turn the timer off"), [call("cancel_timer")]


@template("cancel_timer/04", "cancel_timer", style="other")
def _(c):
    label = c.free(c.rng.choice(TIMER_LABELS))
    return f"I don't need the {label} timer anymore", [call("cancel_timer", label=label)]


@template("cancel_timer/05", "cancel_timer", style="other")
def _(c):
    return c.lit("forget the timer, I'm done cooking", "never mind the timer, get rid of it", "the timer isn't needed anymore, cancel it"), [call("cancel_timer")]


@template("cancel_timer/06", "cancel_timer")
def _(c):
    label = c.free(c.rng.choice(TIMER_LABELS))
    return f"delete the timer for the {label}", [call("cancel_timer", label=label)]


# ---------------------------------------------------------------------------- set_alarm
@template("set_alarm/01", "set_alarm")
def _(c):
    time = c.time(ALARM_HOURS)
    return f"set an alarm for {time}", [call("set_alarm", time=time)]


@template("set_alarm/02", "set_alarm")
def _(c):
    time = c.time(WAKE_HOURS)
    return f"wake me up at {time}", [call("set_alarm", time=time)]


@template("set_alarm/03", "set_alarm")
def _(c):
    time, days = c.time(ALARM_HOURS), c.days()
    return f"set {c.lit('an alarm', 'a recurring alarm')} for {time} {days}", [call("set_alarm", time=time, days=days)]


@template("set_alarm/04", "set_alarm", style="other")
def _(c):
    time = c.time(WAKE_HOURS)
    return f"I {c.lit('need', 'have')} to get up at {time} tomorrow", [call("set_alarm", time=time)]


@template("set_alarm/05", "set_alarm")
def _(c):
    label, time = c.free(c.rng.choice(ALARM_LABELS)), c.time(ALARM_HOURS)
    return f"create {a(label)} {label} alarm at {time}", [call("set_alarm", time=time, label=label)]


@template("set_alarm/06", "set_alarm", style="other")
def _(c):
    days, time = c.days(), c.time(WAKE_HOURS)
    return f"{days}, wake me at {time}", [call("set_alarm", time=time, days=days)]


# ---------------------------------------------------------------------------- set_reminder
TODAY_TOMORROW = {"today": ["today"], "tomorrow": ["tomorrow"]}


@template("set_reminder/01", "set_reminder")
def _(c):
    text, time = c.free(c.rng.choice(REMINDERS)), c.time()
    return f"remind me to {text} at {time}", [call("set_reminder", text=text, time=time)]


@template("set_reminder/02", "set_reminder")
def _(c):
    time, day, text = c.time(), c.one(TODAY_TOMORROW), c.free(c.rng.choice(REMINDERS))
    return f"remind me at {time} {day} to {text}", [call("set_reminder", text=text, time=time, day=day)]


@template("set_reminder/03", "set_reminder")
def _(c):
    text, day, time = c.free(c.rng.choice(REMINDERS)), c.one(TODAY_TOMORROW), c.time()
    return f"set a reminder to {text} {day} at {time}", [call("set_reminder", text=text, time=time, day=day)]


@template("set_reminder/04", "set_reminder", style="other")
def _(c):
    text, time = c.free(c.rng.choice(REMINDERS)), c.time()
    return f"don't let me forget to {text}, {c.lit('ping', 'remind', 'nudge')} me at {time}", [call("set_reminder", text=text, time=time)]


@template("set_reminder/05", "set_reminder")
def _(c):
    time, text = c.time(), c.free(c.rng.choice(REMINDERS))
    return f"create a reminder for {time}: {text}", [call("set_reminder", text=text, time=time)]


@template("set_reminder/06", "set_reminder", style="other")
def _(c):
    text, day, time = c.free(c.rng.choice(REMINDERS)), c.one(TODAY_TOMORROW, value="tomorrow"), c.time()
    return f"I have to {text} {day} at {time}, remind me", [call("set_reminder", text=text, time=time, day=day)]


# ---------------------------------------------------------------------------- shopping list
LIST_NAMES = ("the shopping list", "my shopping list", "the grocery list", "my grocery list")


@template("add_to_shopping_list/01", "add_to_shopping_list")
def _(c):
    item = c.free(c.rng.choice(MASS_ITEMS))
    return f"add {item} to {c.lit(*LIST_NAMES)}", [call("add_to_shopping_list", item=item)]


@template("add_to_shopping_list/02", "add_to_shopping_list")
def _(c):
    n, item = c.number(c.rng.randint(2, 8), words=0.5), c.free(c.rng.choice(COUNT_ITEMS))
    return f"put {n} {item} on {c.lit(*LIST_NAMES)}", [call("add_to_shopping_list", item=item, quantity=n)]


@template("add_to_shopping_list/03", "add_to_shopping_list", style="other")
def _(c):
    item = c.free(c.rng.choice(MASS_ITEMS))
    return f"we're out of {item}, {c.lit('add it to the list', 'put it on the list', 'add it to my shopping list')}", [call("add_to_shopping_list", item=item)]


@template("add_to_shopping_list/04", "add_to_shopping_list", style="terse")
def _(c):
    item = c.free(c.rng.choice(MASS_ITEMS + COUNT_ITEMS))
    return f"{c.lit('shopping list', 'grocery list')}: {item}", [call("add_to_shopping_list", item=item)]


@template("add_to_shopping_list/05", "add_to_shopping_list", style="other")
def _(c):
    n, item = c.number(c.rng.randint(2, 8), words=0.5), c.free(c.rng.choice(COUNT_ITEMS))
    return f"can you add {n} {item} to {c.lit(*LIST_NAMES)}?", [call("add_to_shopping_list", item=item, quantity=n)]


@template("add_to_shopping_list/06", "add_to_shopping_list", style="other")
def _(c):
    item = c.free(c.rng.choice(MASS_ITEMS))
    return f"I need to buy {item}, put it on the list", [call("add_to_shopping_list", item=item)]


@template("remove_from_shopping_list/01", "remove_from_shopping_list")
def _(c):
    item = c.free(c.rng.choice(MASS_ITEMS + COUNT_ITEMS))
    return f"remove {item} from {c.lit(*LIST_NAMES)}", [call("remove_from_shopping_list", item=item)]


@template("remove_from_shopping_list/02", "remove_from_shopping_list")
def _(c):
    item = c.free(c.rng.choice(MASS_ITEMS + COUNT_ITEMS))
    return f"take {item} off {c.lit('my list', 'the list', 'the shopping list')}", [call("remove_from_shopping_list", item=item)]


@template("remove_from_shopping_list/03", "remove_from_shopping_list", style="other")
def _(c):
    item = c.free(c.rng.choice(MASS_ITEMS + COUNT_ITEMS))
    return f"I already bought {item}, cross {c.lit('that', 'it')} off the list", [call("remove_from_shopping_list", item=item)]


@template("remove_from_shopping_list/04", "remove_from_shopping_list")
def _(c):
    item = c.free(c.rng.choice(MASS_ITEMS + COUNT_ITEMS))
    return f"delete {item} from {c.lit(*LIST_NAMES)}", [call("remove_from_shopping_list", item=item)]


@template("remove_from_shopping_list/05", "remove_from_shopping_list", style="other")
def _(c):
    item = c.free(c.rng.choice(MASS_ITEMS + COUNT_ITEMS))
    return f"we don't need {item} anymore, take {c.lit('that', 'it')} off the shopping list", [call("remove_from_shopping_list", item=item)]


# ---------------------------------------------------------------------------- get_weather
@template("get_weather/01", "get_weather", style="other")
def _(c):
    return c.lit("what's the weather like?", "how's the weather?", "what's it like outside?"), [call("get_weather")]


@template("get_weather/02", "get_weather", style="other")
def _(c):
    city = c.free(c.rng.choice(CITIES))
    return f"what's the weather {c.lit('in', 'like in')} {city}?", [call("get_weather", location=city)]


@template("get_weather/03", "get_weather", style="other")
def _(c):
    day = c.one(WEATHER_DAYS)
    return f"{c.lit('will it rain', 'is it going to rain', 'is it supposed to snow')} {day}?", [call("get_weather", day=day)]


@template("get_weather/04", "get_weather", style="other")
def _(c):
    city, day = c.free(c.rng.choice(CITIES)), c.one(WEATHER_DAYS)
    return f"how {c.lit('hot', 'cold', 'warm')} will it {c.lit('be', 'get')} in {city} {day}?", [call("get_weather", location=city, day=day)]


@template("get_weather/05", "get_weather")
def _(c):
    city = c.free(c.rng.choice(CITIES))
    return f"give me the {c.lit('forecast', 'weather forecast')} for {city}", [call("get_weather", location=city)]


@template("get_weather/06", "get_weather", style="other")
def _(c):
    city = c.free(c.rng.choice(CITIES))
    if c.chance(0.5):
        day = c.one(WEATHER_DAYS)
        return f"do I need an umbrella in {city} {day}?", [call("get_weather", location=city, day=day)]
    return f"do I need an umbrella in {city}?", [call("get_weather", location=city)]


# ============================================================================ parallel templates
@template("parallel/01", "parallel")
def _(c):
    state, room, lock = c.one(ON_OFF), c.room(), c.choice(*LOCK)
    return (f"turn {state} the {room} lights and {lock} the car",
            [call("set_lights", room=room, state=state), call("set_car_lock", locked=lock)])


@template("parallel/02", "parallel")
def _(c):
    state, (r1, r2) = c.one(ON_OFF), c.several(ROOM_WORDS, 2)
    return (f"{c.lit('turn', 'switch')} {state} the lights in the {r1} and the {r2}",
            [call("set_lights", room=r1, state=state), call("set_lights", room=r2, state=state)])


@template("parallel/03", "parallel")
def _(c):
    t, room = c.temperature(), c.room(exclude=NO_BLINDS)
    return (f"set the thermostat to {t} and close the {room} blinds",
            [call("set_thermostat", **temp_args(t)), call("set_blinds", room=room, position=0)])


@template("parallel/04", "parallel")
def _(c):
    door = c.one(DOORS)
    return (f"lock the {door} and {c.lit('turn off all the lights', 'switch off every light')}",
            [call("set_door_lock", door=door, locked=True), call("set_lights", room="all", state="off")])


@template("parallel/05", "parallel")
def _(c):
    dest, artist = c.free(c.rng.choice(DESTINATIONS)), c.free(c.rng.choice(ARTISTS))
    return (f"navigate to {dest} and play {artist}",
            [call("navigate_to", destination=dest), call("play_music", artist=artist)])


@template("parallel/06", "parallel")
def _(c):
    first, second = c.frees(CONTACTS, 2)
    text = c.free(c.rng.choice(MESSAGES))
    return (f"text {first} saying {text} and then call {second}",
            [call("send_message", contact=first, message=text), call("make_call", contact=second)])


@template("parallel/07", "parallel")
def _(c):
    one, two = c.frees(MASS_ITEMS, 2)
    return (f"add {one} and {two} to {c.lit(*LIST_NAMES)}",
            [call("add_to_shopping_list", item=one), call("add_to_shopping_list", item=two)])


@template("parallel/08", "parallel")
def _(c):
    (l1, l2), d1, d2 = c.frees(TIMER_LABELS, 2), c.duration(), c.duration()
    return (f"set {a(l1)} {l1} timer for {d1} and {a(l2)} {l2} timer for {d2}",
            [call("set_timer", duration_seconds=d1, label=l1), call("set_timer", duration_seconds=d2, label=l2)])


@template("parallel/09", "parallel")
def _(c):
    time = c.time(ALARM_HOURS)
    return (f"set an alarm for {time} and turn on {c.lit(*DND)}",
            [call("set_alarm", time=time), call("set_do_not_disturb", enabled=True)])


@template("parallel/10", "parallel")
def _(c):
    t, seat = c.temperature(CAR_C, CAR_F), c.one(SEATS)
    return (f"preheat the car to {t} and turn on the {seat} heater",
            [call("precondition_cabin", **temp_args(t)), call("set_seat_heating", seat=seat)])


@template("parallel/11", "parallel")
def _(c):
    return (f"{c.lit('close all the windows', 'roll up all the windows')}, lock the car and stop charging",
            [call("set_car_windows", window="all", action="close"), call("set_car_lock", locked=True), call("stop_charging")])


@template("parallel/12", "parallel")
def _(c):
    cat, level = c.category(), c.number(c.rng.choice(VOLUMES[:10]))
    return (f"find the nearest {cat} and turn the volume down to {level}",
            [call("find_nearby", category=cat), call("set_volume", level=level)])


@template("parallel/13", "parallel")
def _(c):
    who = c.free(c.rng.choice(CONTACTS))
    return (f"pause the music and call {who}",
            [call("media_control", action="pause"), call("make_call", contact=who)])


@template("parallel/14", "parallel", style="other")
def _(c):
    city, text, time = c.free(c.rng.choice(CITIES)), c.free(c.rng.choice(REMINDERS)), c.time()
    return (f"what's the weather in {city} tomorrow? also remind me to {text} at {time}",
            [call("get_weather", location=city, day="tomorrow"), call("set_reminder", text=text, time=time)])


@template("parallel/15", "parallel")
def _(c):
    room, color = c.room(), c.one(COLORS)
    return (f"turn on the {room} lights and make them {color}",
            [call("set_lights", room=room, state="on"), call("set_light_color", room=room, color=color)])


@template("parallel/16", "parallel")
def _(c):
    action, state = c.rng.choice([("open", "on"), ("close", "off")])
    action, state = c.slot(action, action), c.slot(state, state)
    return (f"{action} the garage door and turn {state} the garage lights",
            [call("set_garage_door", action=action), call("set_lights", room="garage", state=state)])


@template("parallel/17", "parallel")
def _(c):
    room = c.room(exclude=NO_BLINDS)
    return (f"vacuum the {room} and close the blinds in there",
            [call("start_vacuum", room=room), call("set_blinds", room=room, position=0)])


@template("parallel/18", "parallel")
def _(c):
    mode, t = c.one(HVAC_MODES, only=("heat", "eco", "auto")), c.temperature()
    return (f"switch the heating to {mode} mode and set it to {t}",
            [call("set_hvac_mode", mode=mode), call("set_thermostat", **temp_args(t))])


@template("parallel/19", "parallel")
def _(c):
    if c.chance(0.5):
        level = c.one(HEAT_LEVELS)
        return (f"heat both front seats on {level}",
                [call("set_seat_heating", seat="driver", level=level), call("set_seat_heating", seat="passenger", level=level)])
    return ("heat both front seats",
            [call("set_seat_heating", seat="driver"), call("set_seat_heating", seat="passenger")])


@template("parallel/20", "parallel")
def _(c):
    one, two = c.frees(MASS_ITEMS + COUNT_ITEMS, 2)
    return (f"take {one} off the shopping list and add {two}",
            [call("remove_from_shopping_list", item=one), call("add_to_shopping_list", item=two)])


@template("parallel/21", "parallel")
def _(c):
    span = c.duration()
    return (f"cancel the timer and set a new one for {span}",
            [call("cancel_timer"), call("set_timer", duration_seconds=span)])


@template("parallel/22", "parallel", style="other")
def _(c):
    first = c.lit("how much range do I have left?", "what's my remaining range?")
    return (f"{first} {c.lit('and find me a charging station', 'also find the nearest charging station')}",
            [call("check_vehicle_status", item="range"), call("find_nearby", category="charging_station")])


@template("parallel/23", "parallel", style="other")
def _(c):
    door, time = c.one(DOORS), c.time(ALARM_HOURS)
    return (f"{c.lit('good night', 'I am going to bed')}: turn off all the lights, lock the {door} and set an alarm for {time}",
            [call("set_lights", room="all", state="off"), call("set_door_lock", door=door, locked=True), call("set_alarm", time=time)])


@template("parallel/24", "parallel")
def _(c):
    genre, level = c.one(GENRES), c.number(c.rng.choice(VOLUMES))
    return (f"play some {genre} and set the volume to {level}",
            [call("play_music", genre=genre), call("set_volume", level=level)])


@template("parallel/25", "parallel")
def _(c):
    room = c.room(exclude=NO_BLINDS)
    return (f"open the {room} blinds and turn off the lights in there",
            [call("set_blinds", room=room, position=100), call("set_lights", room=room, state="off")])


@template("parallel/26", "parallel")
def _(c):
    who, text, dest = c.free(c.rng.choice(CONTACTS)), c.free(c.rng.choice(STATEMENTS)), c.free(c.rng.choice(DESTINATIONS))
    return (f"tell {who} that {text} and navigate to {dest}",
            [call("send_message", contact=who, message=text), call("navigate_to", destination=dest)])


@template("parallel/27", "parallel")
def _(c):
    r1, r2 = c.several(ROOM_WORDS, 2, exclude=("garage",))
    style = c.lit("implicit", "celsius", "fahrenheit")
    t1, t2 = c.temperature(style=style), c.temperature(style=style)
    return (f"set the {r1} to {t1} and the {r2} to {t2}",
            [call("set_thermostat", **temp_args(t1), room=r1), call("set_thermostat", **temp_args(t2), room=r2)])


@template("parallel/28", "parallel")
def _(c):
    level = c.number(c.rng.choice(VOLUMES[6:]))
    return (f"skip this song and turn it up to {level}",
            [call("media_control", action="next"), call("set_volume", level=level)])


@template("parallel/29", "parallel")
def _(c):
    action = c.choice(("vent", "vent"), ("crack", "vent"), ("open", "open"), ("close", "close"))
    return (f"{action} {c.lit('the rear windows', 'the back windows', 'both back windows')}",
            [call("set_car_windows", window="rear_left", action=action), call("set_car_windows", window="rear_right", action=action)])


@template("parallel/30", "parallel")
def _(c):
    return ("stop charging and unlock the car", [call("stop_charging"), call("set_car_lock", locked=False)])


@template("parallel/31", "parallel")
def _(c):
    state, (r1, r2, r3) = c.one(ON_OFF), c.several(ROOM_WORDS, 3)
    return (f"turn {state} the lights in the {r1}, the {r2} and the {r3}",
            [call("set_lights", room=room, state=state) for room in (r1, r2, r3)])


@template("parallel/32", "parallel")
def _(c):
    t1 = c.time(ALARM_HOURS)
    t2 = c.time(ALARM_HOURS, exclude=(t1.value,))
    return (f"set {c.lit('alarms', 'two alarms')} for {t1} and {t2}",
            [call("set_alarm", time=t1), call("set_alarm", time=t2)])


# ============================================================================ no-call templates
def _chat(*texts):
    return lambda c: (c.lit(*texts), [])


template("no_call/chitchat-01", "no_call", "other", "chitchat")(_chat("thanks, that's all", "thank you", "thanks a lot", "cheers, that's it", "that's everything, thanks"))
template("no_call/chitchat-02", "no_call", "other", "chitchat")(_chat("good morning", "hi there", "hello", "hey, good evening"))
template("no_call/chitchat-03", "no_call", "other", "chitchat")(_chat("how are you today?", "how's it going?", "how are you doing?"))
template("no_call/chitchat-04", "no_call", "other", "chitchat")(_chat("never mind", "forget it", "oh, never mind", "ignore that"))
template("no_call/chitchat-05", "no_call", "other", "chitchat")(_chat("you're the best", "good job", "nice, that was quick", "perfect"))
template("no_call/chitchat-06", "no_call", "other", "chitchat")(_chat("tell me a joke", "say something funny", "know any good jokes?"))
template("no_call/chitchat-07", "no_call", "other", "chitchat")(_chat("what's your name?", "who made you?", "are you a robot?"))
template("no_call/chitchat-08", "no_call", "other", "chitchat")(_chat("I'm so tired today", "long day at work", "I'm bored", "ugh, Mondays"))


@template("no_call/out_of_scope-01", "no_call", "imp", "out_of_scope", near=("navigate_to",))
def _(c):
    return f"{c.lit('book me a flight to', 'find me cheap flights to', 'book a train ticket to')} {c.free(c.rng.choice(CITIES))}", []


@template("no_call/out_of_scope-02", "no_call", "imp", "out_of_scope", near=("find_nearby",))
def _(c):
    return c.lit("order a large pepperoni pizza", "order me some sushi for delivery", "get me a pad thai delivered"), []


@template("no_call/out_of_scope-03", "no_call", "other", "out_of_scope")
def _(c):
    return f"what's {c.lit('Apple', 'Tesla', 'Microsoft', 'Nvidia', 'Amazon')}'s stock price?", []


@template("no_call/out_of_scope-04", "no_call", "imp", "out_of_scope")
def _(c):
    phrase = c.lit("good night", "where is the train station", "thank you very much")
    return f"translate '{phrase}' into {c.lit('Spanish', 'French', 'Japanese', 'German', 'Italian')}", []


@template("no_call/out_of_scope-05", "no_call", "imp", "out_of_scope", near=("start_vacuum",))
def _(c):
    return c.lit("start the washing machine", "run the dishwasher", "turn on the dryer"), []


@template("no_call/out_of_scope-06", "no_call", "imp", "out_of_scope", near=("set_reminder",))
def _(c):
    who = c.free(c.rng.choice(CONTACTS))
    return f"schedule a meeting with {who} {c.lit('on Friday afternoon', 'next Tuesday', 'for Monday morning')}", []


@template("no_call/out_of_scope-07", "no_call", "imp", "out_of_scope", near=("send_message",))
def _(c):
    return c.lit("pay my electricity bill", "transfer fifty dollars to my savings account", "check my bank balance"), []


@template("no_call/out_of_scope-08", "no_call", "other", "out_of_scope")
def _(c):
    return c.lit("what's the capital of Australia?", "how tall is Mount Everest?", "who won the World Cup in 2018?"), []


@template("no_call/out_of_scope-09", "no_call", "imp", "out_of_scope", near=("set_lights", "play_music"))
def _(c):
    return c.lit("turn on the TV", "switch the TV to channel 5", "record the game tonight"), []


template("no_call/missing_value-01", "no_call", "imp", "missing_value", target=("set_alarm",))(_chat("set an alarm", "set me an alarm", "wake me up tomorrow"))
template("no_call/missing_value-02", "no_call", "imp", "missing_value", target=("make_call",))(_chat("call him", "call her back", "give them a ring"))


@template("no_call/missing_value-03", "no_call", "imp", "missing_value", target=("send_message",))
def _(c):
    return f"{c.lit('send a message to', 'text', 'send a text to')} {c.free(c.rng.choice(CONTACTS))}", []


@template("no_call/missing_value-04", "no_call", "imp", "missing_value", target=("send_message",))
def _(c):
    return f"{c.lit('send a text saying', 'send a message that says', 'write a message saying')} {c.free(c.rng.choice(MESSAGES))}", []


template("no_call/missing_value-05", "no_call", "imp", "missing_value", target=("set_timer",))(_chat("set a timer", "start a timer", "start a countdown"))
template("no_call/missing_value-06", "no_call", "imp", "missing_value", target=("navigate_to",))(_chat("take me there", "start navigation", "navigate"))
template("no_call/missing_value-07", "no_call", "imp", "missing_value", target=("set_thermostat",))(_chat("change the temperature", "adjust the thermostat", "set the thermostat"))


@template("no_call/missing_value-08", "no_call", "imp", "missing_value", target=("set_reminder",))
def _(c):
    return f"remind me to {c.free(c.rng.choice(REMINDERS))}", []


@template("no_call/missing_value-09", "no_call", "imp", "missing_value", target=("set_reminder",))
def _(c):
    return f"{c.lit('set a reminder for', 'create a reminder at', 'remind me at')} {c.time()}", []


template("no_call/missing_value-10", "no_call", "imp", "missing_value", target=("add_to_shopping_list",))(_chat("add something to the shopping list", "put something on my grocery list", "add an item to my list"))
template("no_call/missing_value-11", "no_call", "imp", "missing_value", target=("set_volume",))(_chat("change the volume", "adjust the volume", "set the volume"))


@template("no_call/missing_value-12", "no_call", "imp", "missing_value", target=("set_light_color",))
def _(c):
    return f"change the {c.lit('color', 'colour')} of the {c.room()} lights", []


template("no_call/missing_value-13", "no_call", "imp", "missing_value", target=("find_nearby",))(_chat("find something nearby", "search for places near me", "look for something close by"))

# ============================================================================ surface noise
GREETINGS = ("hey, ", "hi, ", "ok, ", "hey there, ")
FILLERS = ("um, ", "uh, ", "umm ", "uh ", "hmm, ", "so, ", "okay so ", "like, ", "er, ", "oh, ")
POLITE = (("please ", False), ("could you please ", True), ("can you ", True), ("could you ", True),
          ("would you ", True), ("can you please ", True), ("I'd like you to ", False), ("go ahead and ", False),
          ("hey, can you ", True), ("would you please ", True))
INNER_FILLERS = ("um ", "uh ", "like ")
SUFFIXES = (" please", ", please", ", thanks", ", thank you", " for me", " for me please", " thanks")
QUESTION_SUFFIXES = (" Thanks!", " Thanks.", " Thank you!", " thanks")
# Words a typo could turn into another meaning, or that carry a value: never misspelt.
TYPO_SAFE_WORDS = frozenset("""
unlock unlocked locked close closed start stop pause resume previous remove cancel delete enable
disable activate every halfway lower raise tolls highways highway without avoid avoiding tomorrow
today weekend shuffle crack heating cooling heater off again never anymore
""".split())
_WORD = re.compile(r"(?<![A-Za-z'])[a-z]{5,}(?![A-Za-z'])")


def _segments(text: str, slots: list[Slot]) -> list[list]:
    """``[text, slot or None]`` pieces of a template's text."""
    out, position = [], 0
    for match in _SLOT.finditer(text):
        out.append([text[position:match.start()], None])
        out.append([match.group(2), slots[int(match.group(1))]])
        position = match.end()
    out.append([text[position:], None])
    return [piece for piece in out if piece[0] or piece[1] is not None]


def _ends_free(segments: list[list]) -> bool:
    return bool(segments) and segments[-1][1] is not None and segments[-1][1].verbatim


def _decorate(segments: list[list], style: str, rng: random.Random) -> list[list]:
    """Greeting, filler and politeness in front; suffix and end punctuation behind (never next
    to a free-text value, whose end must stay unambiguous)."""
    last = segments[-1]
    # "... know {message}?": the end stays as written, nothing is added after the value
    locked_end = _ends_free(segments) or (last[1] is None and last[0] == "?" and _ends_free(segments[:-1]))
    question = False
    if not locked_end and last[1] is None and last[0].endswith("?"):
        last[0] = last[0][:-1]
        question = True
        if not last[0]:
            segments.pop()
    greeting = rng.choice(GREETINGS) if rng.random() < 0.06 else ""
    head = greeting
    if rng.random() < 0.12:
        head += rng.choice(FILLERS)
    polite = ""
    if style == "imp" and rng.random() < 0.35:
        polite, asks = rng.choice([p for p in POLITE if not (greeting and p[0].startswith("hey"))])
        head += polite
        question = question or asks
        if rng.random() < 0.08:
            head += rng.choice(INNER_FILLERS)
    tail = ""
    if not locked_end:
        body = "".join(piece[0] for piece in segments).rstrip()
        if question:
            tail = "?" if rng.random() < 0.75 else ""
            if rng.random() < 0.12:
                tail += rng.choice(QUESTION_SUFFIXES) if tail else rng.choice((", thanks", ", thank you"))
        else:
            if rng.random() < 0.2:
                options = SUFFIXES if style != "other" else (", thanks", " thanks", ", thank you")
                tail = rng.choice([
                    o for o in options
                    if not ("please" in o and "please" in polite) and not (" for me" in o and body.endswith("me"))
                ])
            draw = rng.random()
            tail += "." if draw < 0.25 else "!" if draw < 0.3 else ""
    return [[head, None], *segments, [tail, None]]


def _typo(segments: list[list], rng: random.Random) -> bool:
    """Swap two adjacent letters or drop one (never the first) in one template word."""
    candidates = [
        (index, match.start(), match.end())
        for index, (text, slot) in enumerate(segments) if slot is None
        for match in _WORD.finditer(text) if match.group() not in TYPO_SAFE_WORDS
    ]
    if not candidates:
        return False
    index, start, end = rng.choice(candidates)
    word = segments[index][0][start:end]
    swaps = [k for k in range(1, len(word) - 1) if word[k] != word[k + 1]]
    if swaps and rng.random() < 0.5:
        k = rng.choice(swaps)
        new = word[:k] + word[k + 1] + word[k] + word[k + 2:]
    else:
        k = rng.randrange(1, len(word))
        new = word[:k] + word[k + 1:]
    segments[index][0] = segments[index][0][:start] + new + segments[index][0][end:]
    return True


def _case(segments: list[list], rng: random.Random) -> None:
    draw = rng.random()
    if draw < 0.2:  # all lower case, values included (free-text values follow the text)
        for piece in segments:
            piece[0] = piece[0].lower()
    elif draw < 0.3:  # left as written
        pass
    else:  # sentence case, unless the text starts with a free-text value
        for piece in segments:
            if piece[0]:
                if piece[1] is None or not piece[1].verbatim:
                    piece[0] = piece[0][:1].upper() + piece[0][1:]
                break


# ============================================================================ rows
def _resolve(value: Any) -> Any:
    if isinstance(value, Slot):
        return value.final if value.verbatim else value.value
    return value


def _arguments(name: str, arguments: dict) -> dict:
    """Resolve slots and order the arguments as the schema lists them; fail on a bad template."""
    schema = _PROPERTIES[name]
    resolved = {key: _resolve(value) for key, value in arguments.items()}
    unknown = set(resolved) - set(schema["properties"])
    missing = set(schema["required"]) - set(resolved)
    if unknown or missing:
        raise AssertionError(f"{name}: unknown {sorted(unknown)}, missing {sorted(missing)}")
    for key, value in resolved.items():
        if value is None or value == "":
            raise AssertionError(f"{name}.{key} is empty")
    return {key: resolved[key] for key in schema["properties"] if key in resolved}


def _offer(relevant: list[str], near: tuple[str, ...], rng: random.Random) -> list[str]:
    """The relevant tools plus 3-5 distractors (the template's tempting ones, often a
    confusable sibling, the rest at random), shuffled."""
    count = rng.randint(MIN_DISTRACTORS, MAX_DISTRACTORS)
    chosen = list(near)
    taken = set(relevant) | set(chosen)
    siblings = sorted({s for name in relevant for s in SIBLINGS[name]} - taken)
    if siblings and rng.random() < 0.5:
        chosen.append(rng.choice(siblings))
        taken.add(chosen[-1])
    pool = [name for name in TOOL_NAMES if name not in taken]
    chosen += rng.sample(pool, count - len(chosen))
    offered = list(relevant) + chosen
    rng.shuffle(offered)
    return offered


def _render(tmpl: Template, rng: random.Random, seen: set[str], stats: Counter) -> dict:
    """One row of a template, with a text not produced before."""
    for _attempt in range(400):
        ctx = Ctx(rng)
        text, calls = tmpl.build(ctx)
        segments = _decorate(_segments(text, ctx.slots), tmpl.style, rng)
        typo = rng.random() < TYPO_RATE and _typo(segments, rng)
        _case(segments, rng)
        content = "".join(piece[0] for piece in segments).strip()
        content = re.sub(r"\s+", " ", content)
        if content.casefold() in seen:
            continue
        seen.add(content.casefold())
        stats["typo"] += typo
        for piece in segments:
            if piece[1] is not None:
                piece[1].final = piece[0]
        reference = [{"name": c["name"], "arguments": _arguments(c["name"], c["arguments"])} for c in calls]
        relevant = list(dict.fromkeys([c["name"] for c in reference] or list(tmpl.target)))
        return {
            "id": None,
            "messages": [{"role": "user", "content": content}],
            "tools": _offer(relevant, tmpl.near, rng),
            "reference": reference,
            "template": tmpl.id,
            "intent": tmpl.intent,
        }
    raise RuntimeError(f"template {tmpl.id} ran out of distinct phrasings")


def _plan(count: int) -> list[Template]:
    """Which template each row comes from: the strata in their shares, balanced inside."""
    n_parallel = round(count * PARALLEL_SHARE)
    n_no_call = round(count * NO_CALL_SHARE)
    n_single = count - n_parallel - n_no_call
    plan: list[Template] = []

    def balanced(groups: list[list[Template]], n: int) -> None:
        for k in range(n):
            group = groups[k % len(groups)]
            plan.append(group[(k // len(groups)) % len(group)])

    singles = [[t for t in TEMPLATES if t.kind == "single" and t.intent == name] for name in TOOL_NAMES]
    balanced([group for group in singles if group], n_single)
    balanced([[t for t in TEMPLATES if t.kind == "parallel"]], n_parallel)
    balanced([[t for t in TEMPLATES if t.kind == kind] for kind in NO_CALL_KINDS], n_no_call)
    return plan


def _build(seed: int, count: int) -> tuple[list[dict], list[dict], Counter]:
    rng = random.Random(seed)
    seen: set[str] = set()
    stats: Counter = Counter()
    rows = [_render(tmpl, rng, seen, stats) for tmpl in _plan(count)]
    rng.shuffle(rows)
    for number, row in enumerate(rows, start=1):
        row["id"] = f"demo-{number:05d}"
    return json.loads(json.dumps(TOOLS)), rows, stats


def generate(seed: int = DEFAULT_SEED, count: int = DEFAULT_COUNT) -> tuple[list[dict], list[dict]]:
    """The tool schemas and ``count`` request rows for ``seed`` (deterministic)."""
    tools, rows, _stats = _build(seed, count)
    return tools, rows


def dump_tools(tools: list[dict]) -> str:
    return json.dumps(tools, ensure_ascii=False, indent=2) + "\n"


def dump_rows(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n" for row in rows)


def write(out: str | Path, tools: list[dict], rows: list[dict]) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tools_path, rows_path = out / TOOLS_FILE, out / REQUESTS_FILE
    tools_path.write_text(dump_tools(tools), encoding="utf-8", newline="\n")
    rows_path.write_text(dump_rows(rows), encoding="utf-8", newline="\n")
    return tools_path, rows_path


def template_catalog() -> list[dict]:
    """Every template's id, intent, kind and (for missing values) target tool."""
    return [{"id": t.id, "intent": t.intent, "kind": t.kind, "target": list(t.target)} for t in TEMPLATES]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default %(default)s)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default %(default)s)")
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="number of requests (default %(default)s)")
    args = parser.parse_args(argv)
    tools, rows, stats = _build(args.seed, args.count)
    tools_path, rows_path = write(args.out, tools, rows)
    kinds = Counter("no_call" if not r["reference"] else "single" if len(r["reference"]) == 1 else "parallel" for r in rows)
    shares = ", ".join(f"{kind} {kinds[kind] / len(rows):.1%}" for kind in ("single", "parallel", "no_call"))
    print(f"wrote {tools_path} ({len(tools)} tools) and {rows_path} ({len(rows)} rows: {shares}; "
          f"{stats['typo'] / len(rows):.1%} with a typo; {len(TEMPLATES)} templates)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
