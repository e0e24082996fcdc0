using System.Buffers;
using System.Collections.Concurrent;
using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Llama3.Tokenization;

/// <summary>
/// The byte-level BPE vocabulary with tiktoken's semantics: token id = merge rank, and a piece is encoded by
/// repeatedly merging the adjacent pair whose concatenation has the lowest rank (leftmost on ties), as
/// tiktoken's <c>byte_pair_merge</c> (src/lib.rs). Lookups take a byte span and allocate nothing.
/// </summary>
internal sealed class BytePairRanks
{
    private readonly byte[] _pool;       // every token's bytes, back to back
    private readonly int[] _start;       // per id: offset into _pool; _start[Count] = pool length
    private readonly int[] _slots;       // open addressing: id + 1, 0 = empty
    private readonly uint[] _slotHash;
    private readonly int _mask;

    /// <summary>Builds the table from the bytes of tokens 0..n-1 (rank = index). Duplicates are an error.</summary>
    public BytePairRanks(IReadOnlyList<byte[]> tokens, Func<int, string> duplicateError)
    {
        Count = tokens.Count;
        long total = 0;
        foreach (var t in tokens) total += t.Length;
        _pool = new byte[total];
        _start = new int[Count + 1];
        int at = 0;
        for (int i = 0; i < Count; i++)
        {
            _start[i] = at;
            tokens[i].CopyTo(_pool, at);
            at += tokens[i].Length;
        }
        _start[Count] = at;

        int cap = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(16, Count * 2));
        _slots = new int[cap];
        _slotHash = new uint[cap];
        _mask = cap - 1;
        for (int id = 0; id < Count; id++)
        {
            var key = Bytes(id);
            if (key.IsEmpty) throw new InvalidDataException(duplicateError(id));
            uint h = Hash(key);
            int s = (int)(h & (uint)_mask);
            while (_slots[s] != 0)
            {
                if (_slotHash[s] == h && Bytes(_slots[s] - 1).SequenceEqual(key))
                    throw new InvalidDataException(duplicateError(id));
                s = (s + 1) & _mask;
            }
            _slots[s] = id + 1;
            _slotHash[s] = h;
        }
        _cacheLookup = _cache.GetAlternateLookup<ReadOnlySpan<byte>>();
        ByteToId = new int[256];
        Span<byte> one = stackalloc byte[1];
        for (int b = 0; b < 256; b++)
        {
            one[0] = (byte)b;
            ByteToId[b] = Lookup(one);
        }
    }

    /// <summary>Number of ranked tokens.</summary>
    public int Count { get; }

    /// <summary>For each byte value, the id of the single-byte token (or -1).</summary>
    public int[] ByteToId { get; }

    /// <summary>The bytes of token <paramref name="id"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ReadOnlySpan<byte> Bytes(int id) => _pool.AsSpan(_start[id], _start[id + 1] - _start[id]);

    /// <summary>The rank (id) of a byte sequence, or -1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Lookup(ReadOnlySpan<byte> key)
    {
        uint h = Hash(key);
        int s = (int)(h & (uint)_mask);
        while (true)
        {
            int v = _slots[s];
            if (v == 0) return -1;
            if (_slotHash[s] == h)
            {
                int id = v - 1;
                int st = _start[id];
                if (_start[id + 1] - st == key.Length && _pool.AsSpan(st, key.Length).SequenceEqual(key))
                    return id;
            }
            s = (s + 1) & _mask;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static uint Hash(ReadOnlySpan<byte> key)
    {
        // A multiply-xorshift hash over 8-byte words; tokens are short, so the first words decide.
        ulong h = 0x9E3779B97F4A7C15UL ^ (ulong)key.Length;
        ref byte p = ref MemoryMarshal.GetReference(key);
        int n = key.Length, i = 0;
        for (; i + 8 <= n; i += 8)
            h = (h ^ Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref p, i))) * 0xFF51AFD7ED558CCDUL;
        if (i < n)
        {
            ulong tail = 0;
            for (int k = 0; i + k < n; k++) tail |= (ulong)Unsafe.Add(ref p, i + k) << (8 * k);
            h = (h ^ tail) * 0xC4CEB9FE1A85EC53UL;
        }
        h ^= h >> 29;
        return (uint)(h ^ (h >> 32));
    }

    /// <summary>Encodes one piece (already split by the pattern), appending ids to <paramref name="output"/>.</summary>
    public void EncodePiece(ReadOnlySpan<byte> piece, List<int> output)
    {
        int whole = Lookup(piece);
        if (whole >= 0)
        {
            output.Add(whole);
            return;
        }
        if (piece.Length > MaxCachedPiece)
        {
            MergeLarge(piece, output);
            return;
        }
        // Words recur, and merging costs far more than a lookup: remember merged pieces (thread-safe, bounded).
        if (_cacheLookup.TryGetValue(piece, out int[]? cached))
        {
            output.AddRange(cached);
            return;
        }
        int before = output.Count;
        MergeSmall(piece, output);
        if (_cache.Count < MaxCacheEntries)
            _cacheLookup.TryAdd(piece, output.GetRange(before, output.Count - before).ToArray());
    }

    private const int MaxCachedPiece = 256;
    private const int MaxCacheEntries = 1 << 16;
    private readonly ConcurrentDictionary<byte[], int[]> _cache = new(ByteSequenceComparer.Instance);
    private ConcurrentDictionary<byte[], int[]>.AlternateLookup<ReadOnlySpan<byte>> _cacheLookup;

    private sealed class ByteSequenceComparer : IEqualityComparer<byte[]>, IAlternateEqualityComparer<ReadOnlySpan<byte>, byte[]>
    {
        public static readonly ByteSequenceComparer Instance = new();
        public bool Equals(byte[]? x, byte[]? y) => x.AsSpan().SequenceEqual(y);
        public int GetHashCode(byte[] obj) => (int)Hash(obj);
        public bool Equals(ReadOnlySpan<byte> alternate, byte[] other) => alternate.SequenceEqual(other);
        public int GetHashCode(ReadOnlySpan<byte> alternate) => (int)Hash(alternate);
        public byte[] Create(ReadOnlySpan<byte> alternate) => alternate.ToArray();
    }

    // tiktoken's byte_pair_merge: parts[i] = (start, rank of the pair starting at part i); O(n^2), fast for short pieces.
    private void MergeSmall(ReadOnlySpan<byte> piece, List<int> output)
    {
        int n = piece.Length;
        Span<int> start = stackalloc int[n + 1];
        Span<int> rank = stackalloc int[n + 1];
        int parts = n + 1;
        for (int i = 0; i < n; i++)
        {
            start[i] = i;
            rank[i] = i + 1 < n ? RankOrMax(piece.Slice(i, 2)) : int.MaxValue;
        }
        start[n] = n;
        rank[n] = int.MaxValue;

        while (true)
        {
            int min = int.MaxValue, at = -1;
            for (int i = 0; i < parts - 1; i++)
                if (rank[i] < min) { min = rank[i]; at = i; }
            if (at < 0) break;
            // Merge part at and at+1: remove entry at+1, then recompute the ranks around the merged part.
            start.Slice(at + 2, parts - at - 2).CopyTo(start.Slice(at + 1));
            rank.Slice(at + 2, parts - at - 2).CopyTo(rank.Slice(at + 1));
            parts--;
            rank[at] = at + 2 < parts ? RankOrMax(piece[start[at]..start[at + 2]]) : int.MaxValue;
            if (at > 0)
                rank[at - 1] = RankOrMax(piece[start[at - 1]..start[at + 1]]);
        }
        for (int i = 0; i < parts - 1; i++)
            output.Add(Lookup(piece[start[i]..start[i + 1]]));
    }

    // The same merge order with a heap and a linked list: O(n log n) for the long pieces Meta's wrapper allows (25,000 code points).
    private void MergeLarge(ReadOnlySpan<byte> piece, List<int> output)
    {
        int n = piece.Length;
        int[] startArr = ArrayPool<int>.Shared.Rent(n + 1);
        int[] nextArr = ArrayPool<int>.Shared.Rent(n + 1);
        int[] prevArr = ArrayPool<int>.Shared.Rent(n + 1);
        int[] rankArr = ArrayPool<int>.Shared.Rent(n + 1);
        try
        {
            var start = startArr.AsSpan(0, n + 1);
            var next = nextArr.AsSpan(0, n + 1);
            var prev = prevArr.AsSpan(0, n + 1);
            var rank = rankArr.AsSpan(0, n + 1);
            // Part i covers piece[start[i] .. start[next[i]]); node n is the end sentinel.
            var heap = new PriorityQueue<int, long>(n);
            for (int i = 0; i <= n; i++)
            {
                start[i] = i;
                next[i] = i + 1;
                prev[i] = i - 1;
                rank[i] = int.MaxValue;
            }
            for (int i = 0; i + 1 < n; i++)
            {
                rank[i] = RankOrMax(piece.Slice(i, 2));
                if (rank[i] != int.MaxValue) heap.Enqueue(i, Key(rank[i], i));
            }
            while (heap.TryDequeue(out int i, out long key))
            {
                if (start[i] < 0 || rank[i] == int.MaxValue || Key(rank[i], i) != key) continue; // stale entry
                int j = next[i];                      // merge part j into part i
                int k = next[j];
                next[i] = k;
                prev[k] = i;
                start[j] = -1;
                rank[i] = next[k] <= n && k < n ? RankOrMax(piece[start[i]..start[next[k]]]) : int.MaxValue;
                if (rank[i] != int.MaxValue) heap.Enqueue(i, Key(rank[i], i));
                int p = prev[i];
                if (p >= 0)
                {
                    rank[p] = RankOrMax(piece[start[p]..start[k]]);
                    if (rank[p] != int.MaxValue) heap.Enqueue(p, Key(rank[p], p));
                }
            }
            for (int i = 0; i < n; i = next[i])
                output.Add(Lookup(piece[start[i]..start[next[i]]]));
        }
        finally
        {
            ArrayPool<int>.Shared.Return(startArr);
            ArrayPool<int>.Shared.Return(nextArr);
            ArrayPool<int>.Shared.Return(prevArr);
            ArrayPool<int>.Shared.Return(rankArr);
        }
    }

    // Order: lowest rank first, then leftmost (by byte position, which orders parts as tiktoken's index does).
    private static long Key(int rank, int pos) => ((long)rank << 32) | (uint)pos;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int RankOrMax(ReadOnlySpan<byte> pair)
    {
        int r = Lookup(pair);
        return r < 0 ? int.MaxValue : r;
    }
}
