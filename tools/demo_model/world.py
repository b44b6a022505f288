"""The demo model's small world of facts: every fact here is true (or a plain convention, like a
dog saying "woof") and can be checked by a reader. corpus.py weaves them into sentences.

Countries: (English name, capital, language, French name with article, "de" form, "en"/"au"
form, capital in French, language in French). The French forms are written out, not derived, so
they read as a French speaker writes them.
"""

COUNTRIES = [
    # name, capital, language, le, de, en, capitale, langue
    ("France", "Paris", "French", "la France", "de la France", "en France", "Paris", "français"),
    ("Germany", "Berlin", "German", "l'Allemagne", "de l'Allemagne", "en Allemagne", "Berlin",
     "allemand"),
    ("Italy", "Rome", "Italian", "l'Italie", "de l'Italie", "en Italie", "Rome", "italien"),
    ("Spain", "Madrid", "Spanish", "l'Espagne", "de l'Espagne", "en Espagne", "Madrid",
     "espagnol"),
    ("Portugal", "Lisbon", "Portuguese", "le Portugal", "du Portugal", "au Portugal", "Lisbonne",
     "portugais"),
    ("England", "London", "English", "l'Angleterre", "de l'Angleterre", "en Angleterre",
     "Londres", "anglais"),
    ("Ireland", "Dublin", "English", "l'Irlande", "de l'Irlande", "en Irlande", "Dublin",
     "anglais"),
    ("Poland", "Warsaw", "Polish", "la Pologne", "de la Pologne", "en Pologne", "Varsovie",
     "polonais"),
    ("Greece", "Athens", "Greek", "la Grèce", "de la Grèce", "en Grèce", "Athènes", "grec"),
    ("Sweden", "Stockholm", "Swedish", "la Suède", "de la Suède", "en Suède", "Stockholm",
     "suédois"),
    ("Norway", "Oslo", "Norwegian", "la Norvège", "de la Norvège", "en Norvège", "Oslo",
     "norvégien"),
    ("Finland", "Helsinki", "Finnish", "la Finlande", "de la Finlande", "en Finlande",
     "Helsinki", "finnois"),
    ("Denmark", "Copenhagen", "Danish", "le Danemark", "du Danemark", "au Danemark",
     "Copenhague", "danois"),
    ("Austria", "Vienna", "German", "l'Autriche", "de l'Autriche", "en Autriche", "Vienne",
     "allemand"),
    ("Hungary", "Budapest", "Hungarian", "la Hongrie", "de la Hongrie", "en Hongrie", "Budapest",
     "hongrois"),
    ("Russia", "Moscow", "Russian", "la Russie", "de la Russie", "en Russie", "Moscou", "russe"),
    ("Turkey", "Ankara", "Turkish", "la Turquie", "de la Turquie", "en Turquie", "Ankara", "turc"),
    ("Egypt", "Cairo", "Arabic", "l'Égypte", "de l'Égypte", "en Égypte", "Le Caire", "arabe"),
    ("Morocco", "Rabat", "Arabic", "le Maroc", "du Maroc", "au Maroc", "Rabat", "arabe"),
    ("Kenya", "Nairobi", "Swahili", "le Kenya", "du Kenya", "au Kenya", "Nairobi", "swahili"),
    ("Nigeria", "Abuja", "English", "le Nigeria", "du Nigeria", "au Nigeria", "Abuja", "anglais"),
    ("Japan", "Tokyo", "Japanese", "le Japon", "du Japon", "au Japon", "Tokyo", "japonais"),
    ("China", "Beijing", "Chinese", "la Chine", "de la Chine", "en Chine", "Pékin", "chinois"),
    ("India", "New Delhi", "Hindi", "l'Inde", "de l'Inde", "en Inde", "New Delhi", "hindi"),
    ("Thailand", "Bangkok", "Thai", "la Thaïlande", "de la Thaïlande", "en Thaïlande", "Bangkok",
     "thaï"),
    ("Vietnam", "Hanoi", "Vietnamese", "le Vietnam", "du Vietnam", "au Vietnam", "Hanoï",
     "vietnamien"),
    ("South Korea", "Seoul", "Korean", "la Corée du Sud", "de la Corée du Sud", "en Corée du Sud",
     "Séoul", "coréen"),
    ("Indonesia", "Jakarta", "Indonesian", "l'Indonésie", "de l'Indonésie", "en Indonésie",
     "Jakarta", "indonésien"),
    ("Iran", "Tehran", "Persian", "l'Iran", "de l'Iran", "en Iran", "Téhéran", "persan"),
    ("Australia", "Canberra", "English", "l'Australie", "de l'Australie", "en Australie",
     "Canberra", "anglais"),
    ("Canada", "Ottawa", "English", "le Canada", "du Canada", "au Canada", "Ottawa", "anglais"),
    ("Mexico", "Mexico City", "Spanish", "le Mexique", "du Mexique", "au Mexique", "Mexico",
     "espagnol"),
    ("Brazil", "Brasília", "Portuguese", "le Brésil", "du Brésil", "au Brésil", "Brasília",
     "portugais"),
    ("Argentina", "Buenos Aires", "Spanish", "l'Argentine", "de l'Argentine", "en Argentine",
     "Buenos Aires", "espagnol"),
    ("Peru", "Lima", "Spanish", "le Pérou", "du Pérou", "au Pérou", "Lima", "espagnol"),
    ("Chile", "Santiago", "Spanish", "le Chili", "du Chili", "au Chili", "Santiago", "espagnol"),
    ("Cuba", "Havana", "Spanish", "Cuba", "de Cuba", "à Cuba", "La Havane", "espagnol"),
]

# (animal, plural, the sound it says, verb "a dog barks", French: article+noun, French sound)
ANIMALS = [
    ("dog", "dogs", "woof", "barks", "le chien", "ouaf"),
    ("cat", "cats", "meow", "meows", "le chat", "miaou"),
    ("cow", "cows", "moo", "moos", "la vache", "meuh"),
    ("duck", "ducks", "quack", "quacks", "le canard", "coin-coin"),
    ("sheep", "sheep", "baa", "bleats", "le mouton", "bêê"),
    ("pig", "pigs", "oink", "grunts", "le cochon", "groin-groin"),
    ("horse", "horses", "neigh", "neighs", None, None),
    ("owl", "owls", "hoot", "hoots", None, None),
    ("mouse", "mice", "squeak", "squeaks", None, None),
    ("frog", "frogs", "ribbit", "croaks", None, None),
    ("bee", "bees", "buzz", "buzzes", None, None),
    ("lion", "lions", "roar", "roars", None, None),
    ("snake", "snakes", "hiss", "hisses", None, None),
    ("donkey", "donkeys", "hee-haw", "brays", "l'âne", "hi-han"),
    ("hen", "hens", "cluck", "clucks", None, None),
    ("rooster", "roosters", "cock-a-doodle-doo", "crows", "le coq", "cocorico"),
]

# (object, plural or None when uncountable, colour, French: article+noun, French colour agreeing)
COLOURS = [
    ("sky", None, "blue", "le ciel", "bleu"),
    ("grass", None, "green", "l'herbe", "verte"),
    ("snow", None, "white", "la neige", "blanche"),
    ("coal", None, "black", "le charbon", "noir"),
    ("banana", "bananas", "yellow", "la banane", "jaune"),
    ("tomato", "tomatoes", "red", "la tomate", "rouge"),
    ("strawberry", "strawberries", "red", "la fraise", "rouge"),
    ("lemon", "lemons", "yellow", "le citron", "jaune"),
    ("carrot", "carrots", "orange", "la carotte", "orange"),
    ("pumpkin", "pumpkins", "orange", "la citrouille", "orange"),
    ("sea", None, "blue", "la mer", "bleue"),
    ("milk", None, "white", "le lait", "blanc"),
    ("chocolate", None, "brown", "le chocolat", "marron"),
    ("crow", "crows", "black", "le corbeau", "noir"),
    ("leaf", "leaves", "green", "la feuille", "verte"),
    ("sun", None, "yellow", "le soleil", "jaune"),
    ("cloud", "clouds", "white", "le nuage", "blanc"),
    ("elephant", "elephants", "grey", "l'éléphant", "gris"),
    ("plum", "plums", "purple", "la prune", "violette"),
    ("cherry", "cherries", "red", "la cerise", "rouge"),
    ("pea", "peas", "green", "le petit pois", "vert"),
    ("ash", None, "grey", "la cendre", "grise"),
]

OPPOSITES = [
    ("hot", "cold"), ("big", "small"), ("up", "down"), ("day", "night"), ("fast", "slow"),
    ("happy", "sad"), ("old", "young"), ("open", "closed"), ("light", "dark"), ("good", "bad"),
    ("early", "late"), ("full", "empty"), ("rich", "poor"), ("wet", "dry"), ("hard", "soft"),
    ("loud", "quiet"), ("strong", "weak"), ("left", "right"), ("first", "last"), ("yes", "no"),
    ("push", "pull"), ("buy", "sell"), ("win", "lose"), ("high", "low"), ("thick", "thin"),
    ("clean", "dirty"), ("north", "south"), ("east", "west"), ("inside", "outside"),
    ("above", "below"),
]

PLURALS = [
    ("cat", "cats"), ("dog", "dogs"), ("box", "boxes"), ("child", "children"), ("mouse", "mice"),
    ("man", "men"), ("woman", "women"), ("foot", "feet"), ("tooth", "teeth"), ("goose", "geese"),
    ("sheep", "sheep"), ("fish", "fish"), ("baby", "babies"), ("city", "cities"),
    ("knife", "knives"), ("leaf", "leaves"), ("wolf", "wolves"), ("bus", "buses"),
    ("glass", "glasses"), ("person", "people"), ("ox", "oxen"), ("potato", "potatoes"),
    ("book", "books"), ("tree", "trees"), ("house", "houses"), ("apple", "apples"),
    ("church", "churches"), ("story", "stories"), ("party", "parties"), ("wife", "wives"),
]

# English -> French (with the French article for the little French sentences)
FRENCH_WORDS = [
    ("cat", "chat"), ("dog", "chien"), ("house", "maison"), ("water", "eau"), ("bread", "pain"),
    ("apple", "pomme"), ("book", "livre"), ("red", "rouge"), ("blue", "bleu"), ("green", "vert"),
    ("white", "blanc"), ("black", "noir"), ("sun", "soleil"), ("moon", "lune"), ("tree", "arbre"),
    ("car", "voiture"), ("friend", "ami"), ("hello", "bonjour"), ("thank you", "merci"),
    ("big", "grand"), ("small", "petit"), ("cheese", "fromage"), ("milk", "lait"),
    ("child", "enfant"), ("school", "école"), ("city", "ville"), ("sea", "mer"),
    ("flower", "fleur"), ("bird", "oiseau"), ("horse", "cheval"), ("cow", "vache"),
    ("fish", "poisson"), ("mother", "mère"), ("father", "père"), ("night", "nuit"),
    ("day", "jour"),
]

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
                "seventeen", "eighteen", "nineteen", "twenty"]
NOMBRES = ["zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix",
           "onze", "douze", "treize", "quatorze", "quinze", "seize", "dix-sept", "dix-huit",
           "dix-neuf", "vingt"]

NAMES = [("Tom", "he", "his"), ("Anna", "she", "her"), ("Lucy", "she", "her"),
         ("Ben", "he", "his"), ("Sam", "he", "his"), ("Mia", "she", "her"), ("Leo", "he", "his"),
         ("Emma", "she", "her"), ("Max", "he", "his"), ("Lily", "she", "her"),
         ("Jack", "he", "his"), ("Rosa", "she", "her"), ("Omar", "he", "his"),
         ("Yuki", "she", "her"), ("Nina", "she", "her"), ("Paul", "he", "his")]
NOMS = [("Marie", "elle"), ("Pierre", "il"), ("Luc", "il"), ("Julie", "elle"),
        ("Camille", "elle"), ("Louis", "il"), ("Léa", "elle"), ("Hugo", "il")]

# Countable things for little counting stories (singular, plural).
THINGS = [("apple", "apples"), ("book", "books"), ("ball", "balls"), ("cake", "cakes"),
          ("flower", "flowers"), ("pencil", "pencils"), ("egg", "eggs"), ("box", "boxes"),
          ("shell", "shells"), ("coin", "coins"), ("banana", "bananas"), ("star", "stars")]
