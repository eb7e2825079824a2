"""Every type tag of the fingerprint stream, in one table.

A fingerprint is the xxh3-128 of a stream of ``tag + length + content`` records (see
:mod:`resumable_nb.fingerprint`). The stream decodes one way only if each tag stands for one
layout: two kinds of value sharing a tag could hash alike (a float and an 8-character name
once did). So every tag is one byte, every byte is used by one name below, and
``tests/test_fingerprint.py`` checks both. A new handler adds its tags here.

Changing a value here changes fingerprints: bump ``FINGERPRINT_VERSION``.
"""

from __future__ import annotations

# -- scalars -----------------------------------------------------------------------------
NONE = b"0"
BOOL = b"?"
INT = b"i"
FLOAT = b"d"
COMPLEX = b"j"
STR = b"s"
BYTES = b"x"
SINGLETON = b"e"  # Ellipsis, NotImplemented: by repr
EMPTY_CELL = b"_"  # an empty closure cell

# -- containers --------------------------------------------------------------------------
BACKREF = b"@"  # an object met before in this pass (cycle or shared reference)
LIST = b"L"
TUPLE = b"T"
DICT = b"D"
SET = b"S"
FROZENSET = b"F"
BYTEARRAY = b"y"
MEMORYVIEW = b"m"
MAPPINGPROXY = b"X"
RANGE = b"r"
SLICE = b"l"
BUFFER = b"b"  # raw bytes of an array, a memoryview or an Arrow buffer
SHAPE = b"h"  # an array's shape, or an Arrow array's length/offset/null count
ELEMENTS = b"o"  # an object array's elements, one by one

# -- code --------------------------------------------------------------------------------
NOTEBOOK_FUNCTION = b"N"  # defined in the notebook: by code, and the globals it reads
LOCAL_FUNCTION = b"u"  # defined in a local module hashed by content: by code
RUNTIME_FUNCTION = b"v"  # made at run time by library code: by code + its module
MODULE_FUNCTION = b"3"  # of a local module or a foreign namespace (%run, exec): by code + globals read
ENVIRON = b"4"  # the environment variables a function reads, by value
ENV_OBJECT = b"-"  # os.environ, os.getenv (or a bound method of os.environ) met as a value
FOREIGN_ATTRIBUTE = b"^"  # an installed module's attribute set from elsewhere (a patch)
METACLASS = b"5"  # a notebook or local class's metaclass
TYPEVAR = b"6"  # a TypeVar, ParamSpec or TypeVarTuple: its kind, name, bound, constraints, variance
BOUND_METHOD = b"B"
BUILTIN = b"c"
DESCRIPTOR = b"$"
METHOD_WRAPPER = b"%"
PROPERTY = b"+"
STATIC_OR_CLASS_METHOD = b"z"
PARTIAL = b"p"
WRAPPER = b"w"  # functools.wraps, lru_cache...: the wrapper's type + the wrapped function
CODE = b"C"
BYTECODE = b"!"
GLOBALS = b"g"  # the notebook globals a function reads
CLASS = b"K"  # defined in the notebook (or a local module): by body
CLASS_ATTRS = b"a"
BY_NAME = b"="  # reached by name in an installed module: that module + the qualified name

# -- modules -----------------------------------------------------------------------------
MODULE = b"M"  # installed: name==version
LOCAL_MODULE = b"O"  # next to the notebook: its loaded content
MEMBER_DIGEST = b"#"  # one attribute of a local module, hashed on its own
MEMBER_OPAQUE = b"~"  # one attribute of a local module without stable content: its type

# -- parts of a record -------------------------------------------------------------------
NAME = b"n"  # a qualified name
KEY = b"k"  # an attribute or global name
TYPE_NAME = b"t"
REDUCED = b"R"  # what __reduce_ex__(4) returns
CLOSED_FILE = b"7"  # a closed file object: its kind, name, mode, encoding, errors

# -- numpy -------------------------------------------------------------------------------
NP_ARRAY = b"A"
NP_SCALAR = b"E"
NP_DTYPE = b"Q"
NP_MASKED = b"8"  # a MaskedArray: data, mask, resolved fill value, hardness, base class
NP_NPZ = b"9"  # an NpzFile (np.load of a .npz): its member names and arrays

# -- pandas ------------------------------------------------------------------------------
PD_FRAME = b"P"
PD_SERIES = b"U"
PD_INDEX = b"I"
PD_MULTIINDEX = b"J"
PD_VALUES = b"V"
PD_INTERVAL = b"G"  # which side of an interval is closed
PD_STRINGS = b"Z"  # strings: their UTF-8 byte lengths (int64), then tags.STR and the bytes
PD_MISSING = b"H"  # the kind of missing value in a string column

# -- Arrow / polars ----------------------------------------------------------------------
ARROW_TABLE = b"W"
ARROW_CHUNKED = b"Y"
ARROW_ARRAY = b"q"
ARROW_TYPE = b"f"  # a schema or data type, by its text
ARROW_BUFFERS = b"1"
POLARS = b"2"

# -- matplotlib --------------------------------------------------------------------------
MPL_TRANSFORM = b"("  # a transform or box: its type + its attributes but its parents
MPL_ARTIST = b"*"  # an artist: what pickle stores, but its stale flag (and a figure's number)
MPL_CALLBACKS = b")"  # a CallbackRegistry: its signals + the callbacks pickling keeps

# -- scikit-learn ------------------------------------------------------------------------
SK_BUNCH = b"&"  # a Bunch: its type + its items
