using System.Buffers.Binary;
using System.Text;

namespace Llama3.Formats.Pth;

/// <summary>Python's <c>None</c>.</summary>
internal sealed class PyNone
{
    public static readonly PyNone Value = new();
    private PyNone() { }
}

/// <summary>A Python tuple.</summary>
internal sealed class PyTuple(object[] items)
{
    public static readonly PyTuple Empty = new([]);
    public object[] Items { get; } = items;
}

/// <summary>A Python list.</summary>
internal sealed class PyList
{
    public List<object> Items { get; } = [];
}

/// <summary>A Python dict or <c>collections.OrderedDict</c>: insertion order kept, a repeated key keeps its place.</summary>
internal sealed class PyDict(bool ordered)
{
    private readonly Dictionary<object, int> _index = [];

    public bool IsOrdered { get; } = ordered;
    public List<KeyValuePair<object, object>> Items { get; } = [];

    public void Set(object key, object value)
    {
        if (_index.TryGetValue(key, out int i))
            Items[i] = new(Items[i].Key, value);
        else
        {
            _index.Add(key, Items.Count);
            Items.Add(new(key, value));
        }
    }
}

/// <summary>The few Python globals a state dict needs: never code, only what the unpickler does itself.</summary>
internal enum PyGlobalKind { OrderedDict, RebuildTensorV2, RebuildParameter, RebuildParameterWithState, Storage }

/// <summary>A resolved <c>GLOBAL</c>: one of the allowed names.</summary>
internal sealed record PyGlobal(string Module, string Name, PyGlobalKind Kind, PthDType DType = default)
{
    public override string ToString() => $"{Module}.{Name}";
}

/// <summary>A storage named by a persistent id: its bytes are the archive entry <c>data/Key</c>.</summary>
internal sealed record PyStorage(string Key, PthDType DType, string Location, long ElementCount);

/// <summary>The result of <c>_rebuild_tensor_v2</c>: a strided view of a storage, bounds already checked.</summary>
internal sealed record PyTensor(PyStorage Storage, long Offset, long[] Shape, long[] Strides);

/// <summary>
/// An unpickler for the subset of the pickle protocol (CPython <c>Lib/pickle.py</c>, <c>_Unpickler</c>) that
/// torch.save writes for a state dict (protocol 2; protocol 4 opcodes too). It builds plain values and never runs
/// code: the only globals it accepts are <c>collections.OrderedDict</c>, <c>torch._utils._rebuild_tensor_v2</c>,
/// <c>_rebuild_parameter</c> and the <c>torch.*Storage</c> classes, each interpreted here. Every read is bounds
/// checked and every structure it grows is capped, so a malicious data.pkl ends in a
/// <see cref="ModelFormatException"/>, not a crash, a hang or a huge allocation. There is no recursion.
/// </summary>
internal sealed unsafe class Unpickler
{
    /// <summary>Far above a state dict's needs: Python's pickler batches appends and setitems by 1000.</summary>
    public const int MaxStack = 1 << 20;

    /// <summary>A state dict memoizes about ten objects per tensor.</summary>
    public const int MaxMemo = 1 << 22;

    /// <summary>Dict keys are hashed on every SETITEM; a cap keeps a repeated giant key from costing quadratic time.</summary>
    public const int MaxKeyLength = 1024;

    private const int MaxDims = 64;
    private const int MaxGlobalLine = 256;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private static readonly Dictionary<string, PthDType> StorageTypes = new(StringComparer.Ordinal)
    {
        ["DoubleStorage"] = PthDType.Float64,
        ["FloatStorage"] = PthDType.Float32,
        ["HalfStorage"] = PthDType.Float16,
        ["BFloat16Storage"] = PthDType.BFloat16,
        ["LongStorage"] = PthDType.Int64,
        ["IntStorage"] = PthDType.Int32,
        ["ShortStorage"] = PthDType.Int16,
        ["CharStorage"] = PthDType.Int8,
        ["ByteStorage"] = PthDType.UInt8,
        ["BoolStorage"] = PthDType.Bool,
    };

    private readonly string _path;
    private readonly string _entry;
    private readonly byte* _p;
    private readonly long _length;
    private long _pos;
    private long _opAt;
    private readonly List<object> _stack = [];
    private readonly List<int> _marks = [];
    private readonly Dictionary<long, object> _memo = [];
    private readonly Dictionary<string, PyStorage> _storages = new(StringComparer.Ordinal);

    private Unpickler(string path, string entry, byte* p, long length)
    {
        _path = path;
        _entry = entry;
        _p = p;
        _length = length;
    }

    /// <summary>
    /// Unpickles the <paramref name="length"/> bytes at <paramref name="p"/> (the archive entry <paramref name="entry"/>
    /// of <paramref name="path"/>) and returns the object STOP leaves.
    /// </summary>
    public static object Load(string path, string entry, byte* p, long length) =>
        new Unpickler(path, entry, p, length).Run();

    private object Run()
    {
        while (true)
        {
            _opAt = _pos;
            byte op = U8();
            switch (op)
            {
                case 0x80: // PROTO
                {
                    byte v = U8();
                    if (v > 5) throw Error($"pickle protocol {v} is not supported (0 to 5 are)");
                    break;
                }
                case 0x95: // FRAME (protocol 4): a length hint for buffered readers; the opcodes inside read the same without it
                {
                    ulong n = U64();
                    if (n > (ulong)(_length - _pos)) throw Error($"a frame of {n} bytes runs past the end of the pickle");
                    break;
                }
                case (byte)'.': // STOP
                    return Pop();
                case (byte)'}': Push(new PyDict(ordered: false)); break; // EMPTY_DICT
                case (byte)']': Push(new PyList()); break; // EMPTY_LIST
                case (byte)')': Push(PyTuple.Empty); break; // EMPTY_TUPLE
                case (byte)'(': // MARK
                    if (_marks.Count >= MaxStack) throw Error($"more than {MaxStack} open marks");
                    _marks.Add(_stack.Count);
                    break;
                case (byte)'0': Pop(); break; // POP
                case (byte)'1': PopMark(); break; // POP_MARK
                case (byte)'2': Push(Peek()); break; // DUP
                case (byte)'q': Put(U8()); break; // BINPUT
                case (byte)'r': Put(U32()); break; // LONG_BINPUT
                case 0x94: Put(_memo.Count); break; // MEMOIZE
                case (byte)'h': Get(U8()); break; // BINGET
                case (byte)'j': Get(U32()); break; // LONG_BINGET
                case (byte)'J': Push((long)(int)U32()); break; // BININT
                case (byte)'K': Push((long)U8()); break; // BININT1
                case (byte)'M': Push((long)U16()); break; // BININT2
                case 0x8a: Push(Long(U8())); break; // LONG1
                case 0x8b: Push(Long(U32())); break; // LONG4
                case (byte)'G': Push(BinaryPrimitives.ReadDoubleBigEndian(Take(8, "a float"))); break; // BINFLOAT
                case (byte)'X': Push(Str(U32())); break; // BINUNICODE
                case 0x8c: Push(Str(U8())); break; // SHORT_BINUNICODE
                case 0x8d: Push(Str(U64())); break; // BINUNICODE8
                // SHORT_BINSTRING, BINSTRING: Python 2 str, which torch.load decodes as UTF-8.
                case (byte)'U': Push(Str(U8())); break;
                case (byte)'T': Push(Str(U32Signed("a string length"))); break;
                case (byte)'C': Push(Bytes(U8())); break; // SHORT_BINBYTES
                case (byte)'B': Push(Bytes(U32())); break; // BINBYTES
                case 0x8e: Push(Bytes(U64())); break; // BINBYTES8
                case 0x96: Push(Bytes(U64())); break; // BYTEARRAY8
                case (byte)'t': Push(new PyTuple(PopMark())); break; // TUPLE
                case 0x85: Push(new PyTuple([Pop()])); break; // TUPLE1
                case 0x86: // TUPLE2
                {
                    object b = Pop(), a = Pop();
                    Push(new PyTuple([a, b]));
                    break;
                }
                case 0x87: // TUPLE3
                {
                    object c = Pop(), b = Pop(), a = Pop();
                    Push(new PyTuple([a, b, c]));
                    break;
                }
                case (byte)'l': // LIST
                {
                    var list = new PyList();
                    list.Items.AddRange(PopMark());
                    Push(list);
                    break;
                }
                case (byte)'d': // DICT
                {
                    object[] items = PopMark();
                    var dict = new PyDict(ordered: false);
                    SetItems(dict, items);
                    Push(dict);
                    break;
                }
                case (byte)'s': // SETITEM
                {
                    object value = Pop(), key = Pop();
                    AsDict(Peek(), "SETITEM").Set(Key(key), value);
                    break;
                }
                case (byte)'u': // SETITEMS
                {
                    object[] items = PopMark();
                    SetItems(AsDict(Peek(), "SETITEMS"), items);
                    break;
                }
                case (byte)'a': // APPEND
                {
                    object value = Pop();
                    AsList(Peek(), "APPEND").Items.Add(value);
                    break;
                }
                case (byte)'e': // APPENDS
                {
                    object[] items = PopMark();
                    AsList(Peek(), "APPENDS").Items.AddRange(items);
                    break;
                }
                case 0x88: Push(true); break; // NEWTRUE
                case 0x89: Push(false); break; // NEWFALSE
                case (byte)'N': Push(PyNone.Value); break; // NONE
                case (byte)'c': // GLOBAL: "module\nname\n"
                {
                    string module = Line(), name = Line();
                    Push(Resolve(module, name));
                    break;
                }
                case 0x93: // STACK_GLOBAL (protocol 4)
                {
                    object name = Pop(), module = Pop();
                    if (module is not string m || name is not string n)
                        throw Error($"STACK_GLOBAL takes two strings, got {Describe(module)} and {Describe(name)}");
                    Push(Resolve(m, n));
                    break;
                }
                case (byte)'R': // REDUCE: callable(*args)
                {
                    object args = Pop(), callable = Pop();
                    Push(Call(callable, args));
                    break;
                }
                case 0x81: // NEWOBJ: cls.__new__(cls, *args)
                {
                    object args = Pop(), cls = Pop();
                    if (cls is PyGlobal { Kind: PyGlobalKind.OrderedDict } && args is PyTuple { Items.Length: 0 })
                        Push(new PyDict(ordered: true));
                    else
                        throw Error($"NEWOBJ of {Describe(cls)} with {Describe(args)} is not supported");
                    break;
                }
                case (byte)'b': // BUILD: inst.__setstate__(state) or inst.__dict__.update(state)
                {
                    object state = Pop();
                    object inst = Peek();
                    // An OrderedDict's state is its attributes, such as the _metadata (module versions) that
                    // Module.state_dict() attaches; they say nothing about the tensors, so they are dropped.
                    if (inst is not PyDict { IsOrdered: true })
                        throw Error($"BUILD on {Describe(inst)} (setting state {Describe(state)}) is not supported");
                    break;
                }
                case (byte)'Q': // BINPERSID
                    Push(PersistentLoad(Pop()));
                    break;
                default:
                    throw Error($"unsupported pickle opcode 0x{op:x2}" + (op is >= 0x21 and < 0x7f ? $" ('{(char)op}')" : "")
                        + "; this reader implements the subset torch.save writes");
            }
        }
    }

    private ModelFormatException Error(string problem) => new(_path, $"{_entry}, byte {_opAt}: {problem}");

    // ---- bounds-checked reads ----

    private ReadOnlySpan<byte> Take(ulong n, string what)
    {
        if (n > (ulong)(_length - _pos))
            throw Error($"truncated: {what} of {n} bytes runs past the end of the pickle ({_length} bytes)");
        if (n > int.MaxValue)
            throw Error($"{what} of {n} bytes is too long");
        var span = new ReadOnlySpan<byte>(_p + _pos, (int)n);
        _pos += (long)n;
        return span;
    }

    private byte U8() => Take(1, "an opcode or argument")[0];
    private ushort U16() => BinaryPrimitives.ReadUInt16LittleEndian(Take(2, "a 16-bit argument"));
    private uint U32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, "a 32-bit argument"));
    private ulong U64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8, "a 64-bit argument"));

    private uint U32Signed(string what)
    {
        int n = (int)U32();
        if (n < 0) throw Error($"negative {what} {n}");
        return (uint)n;
    }

    /// <summary>LONG1/LONG4: a little-endian two's complement integer; only those that fit in 64 bits.</summary>
    private long Long(ulong n)
    {
        var bytes = Take(n, "an integer");
        if (n > 8) throw Error($"an integer of {n} bytes does not fit in 64 bits");
        if (n == 0) return 0;
        long v = 0;
        for (int i = (int)n - 1; i >= 0; i--)
            v = (v << 8) | bytes[i];
        int unused = 64 - 8 * (int)n;
        return unused == 0 ? v : (v << unused) >> unused; // sign-extend
    }

    private string Str(ulong n)
    {
        var bytes = Take(n, "a string");
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw Error("a string is not valid UTF-8");
        }
    }

    private byte[] Bytes(ulong n) => Take(n, "a bytes object").ToArray();

    private string Line()
    {
        long start = _pos, stop = Math.Min(_length, _pos + MaxGlobalLine);
        for (long i = start; i < stop; i++)
        {
            if (_p[i] != (byte)'\n') continue;
            _pos = i + 1;
            return Encoding.UTF8.GetString(_p + start, (int)(i - start));
        }
        throw Error(stop == _length ? "truncated: a GLOBAL name runs past the end of the pickle" : $"a GLOBAL name longer than {MaxGlobalLine} bytes");
    }

    // ---- the stack, marks and memo ----

    private int Floor => _marks.Count > 0 ? _marks[^1] : 0;

    private void Push(object o)
    {
        if (_stack.Count >= MaxStack) throw Error($"the pickle stack grows past {MaxStack} items");
        _stack.Add(o);
    }

    private object Pop()
    {
        if (_stack.Count <= Floor) throw Error("stack underflow");
        object o = _stack[^1];
        _stack.RemoveAt(_stack.Count - 1);
        return o;
    }

    private object Peek()
    {
        if (_stack.Count <= Floor) throw Error("stack underflow");
        return _stack[^1];
    }

    private object[] PopMark()
    {
        if (_marks.Count == 0) throw Error("no MARK to pop to");
        int mark = _marks[^1];
        _marks.RemoveAt(_marks.Count - 1);
        object[] items = _stack.GetRange(mark, _stack.Count - mark).ToArray();
        _stack.RemoveRange(mark, _stack.Count - mark);
        return items;
    }

    private void Put(long index)
    {
        object top = Peek();
        if (_memo.Count >= MaxMemo && !_memo.ContainsKey(index)) throw Error($"more than {MaxMemo} memo entries");
        _memo[index] = top;
    }

    private void Get(long index)
    {
        if (!_memo.TryGetValue(index, out object? o)) throw Error($"memo entry {index} is read before it is written");
        Push(o);
    }

    // ---- containers ----

    private PyDict AsDict(object o, string op) =>
        o as PyDict ?? throw Error($"{op} on {Describe(o)}, which is not a dict");

    private PyList AsList(object o, string op) =>
        o as PyList ?? throw Error($"{op} on {Describe(o)}, which is not a list");

    private void SetItems(PyDict dict, object[] items)
    {
        if (items.Length % 2 != 0) throw Error($"an odd number of items ({items.Length}) for a dict's keys and values");
        for (int i = 0; i < items.Length; i += 2)
            dict.Set(Key(items[i]), items[i + 1]);
    }

    /// <summary>Only simple hashable keys: hashing tuples would need recursion, and no state dict uses them.</summary>
    private object Key(object k) => k switch
    {
        string s when s.Length > MaxKeyLength => throw Error($"a dict key of {s.Length} characters (more than {MaxKeyLength})"),
        string or long or bool or double or PyNone => k,
        _ => throw Error($"a dict key {Describe(k)} is not a string or number"),
    };

    // ---- globals and calls: the only "code" a state dict names, interpreted here ----

    private PyGlobal Resolve(string module, string name)
    {
        switch (module, name)
        {
            case ("collections", "OrderedDict"): return new(module, name, PyGlobalKind.OrderedDict);
            case ("torch._utils", "_rebuild_tensor_v2"): return new(module, name, PyGlobalKind.RebuildTensorV2);
            case ("torch._utils", "_rebuild_parameter"): return new(module, name, PyGlobalKind.RebuildParameter);
            case ("torch._utils", "_rebuild_parameter_with_state"): return new(module, name, PyGlobalKind.RebuildParameterWithState);
        }
        if (module == "torch" && StorageTypes.TryGetValue(name, out var dtype))
            return new(module, name, PyGlobalKind.Storage, dtype);
        string what = Printable($"{module}.{name}");
        if (module == "torch.storage" && name == "_load_from_bytes")
            throw Error($"refusing to load arbitrary Python object {what}: it calls torch.load on embedded bytes (a storage " +
                "pickled outside torch.save's zip format); this reader never runs code from a checkpoint");
        if (module == "torch" && name.EndsWith("Storage", StringComparison.Ordinal))
            throw Error($"storage type {what} is not supported (only {string.Join(", ", StorageTypes.Keys)})");
        throw Error($"refusing to load arbitrary Python object {what}: this reader never runs code from a checkpoint " +
            "and understands only tensors, their storages and (ordered) dicts");
    }

    private object Call(object callable, object args)
    {
        if (callable is not PyGlobal g)
            throw Error($"REDUCE calls {Describe(callable)}, which is not a callable");
        if (args is not PyTuple { Items: var a })
            throw Error($"REDUCE calls {g} with {Describe(args)}, not an argument tuple");
        switch (g.Kind)
        {
            case PyGlobalKind.OrderedDict when a.Length == 0:
                return new PyDict(ordered: true);
            case PyGlobalKind.RebuildTensorV2:
                return RebuildTensor(a);
            // _rebuild_parameter(data, requires_grad, backward_hooks[, state]): an nn.Parameter around data.
            case PyGlobalKind.RebuildParameter when a.Length == 3 && a[0] is PyTensor:
            case PyGlobalKind.RebuildParameterWithState when a.Length == 4 && a[0] is PyTensor:
                return a[0];
            default:
                throw Error($"calling {g} with {Describe(args)} is not supported");
        }
    }

    /// <summary>
    /// <c>torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])</c>:
    /// checked here so that every element the strides can reach lies inside the storage.
    /// </summary>
    private PyTensor RebuildTensor(object[] a)
    {
        if (a.Length is not (6 or 7))
            throw Error($"_rebuild_tensor_v2 takes 6 or 7 arguments, got {a.Length}");
        if (a[0] is not PyStorage storage)
            throw Error($"_rebuild_tensor_v2's storage is {Describe(a[0])}, not a storage");
        if (a[1] is not long offset || offset < 0)
            throw Error($"_rebuild_tensor_v2's storage offset is {Describe(a[1])}");
        long[] shape = Dims(a[2], "size");
        long[] strides = Dims(a[3], "stride");
        if (shape.Length != strides.Length)
            throw Error($"_rebuild_tensor_v2's size {PthTensor.Format(shape)} and stride {PthTensor.Format(strides)} differ in length");
        if (a[4] is not bool)
            throw Error($"_rebuild_tensor_v2's requires_grad is {Describe(a[4])}, not a bool");
        if (a[5] is not PyDict)
            throw Error($"_rebuild_tensor_v2's backward_hooks is {Describe(a[5])}, not a dict");

        try
        {
            long elements = 1, last = offset;
            for (int i = 0; i < shape.Length; i++)
            {
                elements = checked(elements * shape[i]);
                if (shape[i] > 0) last = checked(last + (shape[i] - 1) * strides[i]);
            }
            if (elements > long.MaxValue / 8)
                throw new OverflowException();
            bool inside = elements == 0 ? offset <= storage.ElementCount : last < storage.ElementCount;
            if (!inside)
                throw Error($"a tensor of size {PthTensor.Format(shape)}, stride {PthTensor.Format(strides)} at offset {offset} " +
                    $"reaches past the end of storage '{Printable(storage.Key)}' ({storage.ElementCount} elements)");
        }
        catch (OverflowException)
        {
            throw Error($"a tensor of size {PthTensor.Format(shape)}, stride {PthTensor.Format(strides)} is impossibly large");
        }
        return new PyTensor(storage, offset, shape, strides);
    }

    private long[] Dims(object o, string what)
    {
        if (o is not PyTuple { Items: var items })
            throw Error($"_rebuild_tensor_v2's {what} is {Describe(o)}, not a tuple");
        if (items.Length > MaxDims)
            throw Error($"_rebuild_tensor_v2's {what} has {items.Length} dimensions (at most {MaxDims})");
        var dims = new long[items.Length];
        for (int i = 0; i < items.Length; i++)
        {
            if (items[i] is not long d || d < 0)
                throw Error($"_rebuild_tensor_v2's {what} has {Describe(items[i])} in dimension {i}");
            dims[i] = d;
        }
        return dims;
    }

    /// <summary>torch.save's persistent id for a storage: <c>('storage', storage_type, key, location, numel)</c>.</summary>
    private PyStorage PersistentLoad(object pid)
    {
        if (pid is not PyTuple { Items: var t } || t.Length != 5 || t[0] is not "storage")
            throw Error($"persistent id {Describe(pid)} is not a ('storage', type, key, location, numel) tuple");
        if (t[1] is not PyGlobal { Kind: PyGlobalKind.Storage } type)
            throw Error($"persistent id names {Describe(t[1])} as its storage type, not a torch storage class");
        if (t[2] is not string key || key.Length == 0 || key.Length > MaxKeyLength)
            throw Error($"persistent id has storage key {Describe(t[2])}");
        if (t[3] is not string location)
            throw Error($"persistent id has location {Describe(t[3])}, not a string");
        if (t[4] is not long numel || numel < 0 || numel > long.MaxValue / 8)
            throw Error($"persistent id has element count {Describe(t[4])}");
        if (_storages.TryGetValue(key, out var known))
        {
            // torch.save refuses to write one storage viewed as two types, so a mismatch means a corrupt file.
            if (known.DType != type.DType || known.ElementCount != numel)
                throw Error($"storage '{Printable(key)}' is named as {known.DType} x {known.ElementCount} and as {type.DType} x {numel}");
            return known;
        }
        var storage = new PyStorage(key, type.DType, location, numel);
        _storages.Add(key, storage);
        return storage;
    }

    // ---- descriptions for error messages (depth-limited: cyclic or deep structures must not recurse far) ----

    internal static string Describe(object? o, int depth = 0) => o switch
    {
        null => "nothing",
        string s => "'" + Printable(s) + "'",
        long or double => Convert.ToString(o, System.Globalization.CultureInfo.InvariantCulture)!,
        bool b => b ? "True" : "False",
        PyNone => "None",
        byte[] b => $"bytes of length {b.Length}",
        PyGlobal g => Printable(g.ToString()),
        PyStorage s => $"storage '{Printable(s.Key)}'",
        PyTensor => "a tensor",
        PyTuple t when depth >= 2 || t.Items.Length > 8 => $"a tuple of {t.Items.Length} items",
        PyTuple t => "(" + string.Join(", ", t.Items.Select(i => Describe(i, depth + 1))) + (t.Items.Length == 1 ? ",)" : ")"),
        PyList l => $"a list of {l.Items.Count} items",
        PyDict d => $"{(d.IsOrdered ? "an OrderedDict" : "a dict")} of {d.Items.Count} items",
        _ => o.GetType().Name,
    };

    /// <summary>At most 100 characters, control characters escaped: names from a fuzzed file go into messages.</summary>
    internal static string Printable(string s)
    {
        var sb = new StringBuilder();
        foreach (char c in s.Length > 100 ? s[..100] : s)
            sb.Append(char.IsControl(c) ? $"\\x{(int)c:x2}" : c.ToString());
        if (s.Length > 100) sb.Append("...");
        return sb.ToString();
    }
}
