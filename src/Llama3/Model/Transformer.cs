using System.Numerics.Tensors;
using Llama3.Kernels.Quant;
using Llama3.Kernels.Simd;
using Llama3.Kernels.Threading;

namespace Llama3.Model;

/// <summary>How activations meet the weights in a matrix product.</summary>
public enum ActivationPrecision
{
    /// <summary>
    /// llama.cpp's CPU arithmetic (the default): for quantized weights each activation row is rounded once to 8-bit
    /// blocks (Q8_0, Q8_1 or Q8_K, as the quantization table says) and dotted in integers; F32, F16 and BF16 weights
    /// meet float32 activations. Matches llama.cpp's logits within its README's tolerance (b).
    /// </summary>
    Quantized,

    /// <summary>
    /// Float32 activations everywhere: quantized weights are dequantized row by row and multiplied in float32. Matches
    /// llama.cpp on the dequantized twins within 1e-4; slower.
    /// </summary>
    Float32,
}

/// <summary>
/// The Llama transformer, following Meta's <c>model.py</c> line by line: embed; per layer
/// <c>h = x + attention(attention_norm(x))</c>, <c>out = h + feed_forward(ffn_norm(h))</c>; then <c>norm</c> and
/// <c>output</c>. Weights stay in the files' mappings in their stored type; activations and accumulation are
/// float32 (quantized weights meet 8-bit activations as in llama.cpp unless <see cref="ActivationPrecision.Float32"/>). One instance owns its working buffers, so one forward pass runs at a time per instance.
/// </summary>
public sealed unsafe class Transformer : IDisposable
{
    private readonly LlamaConfig _c;
    private readonly Layer[] _layers;
    private readonly WeightTensor _tokEmbeddings, _output;
    private readonly float[] _normWeight;
    private readonly bool _rotateHalf;
    private readonly float[]? _ropeFactors;
    private RopeTable? _rope;
    private byte[] _actQ = [];
    private readonly WorkerPool _pool;
    // Matrices held packed for their type's lanes kernels (QuantType.Packed), in native memory this instance owns.
    private readonly Dictionary<WeightTensor, nint> _packed = new(ReferenceEqualityComparer.Instance);
    private byte* _packedBuffer;
    private readonly LinearJob _linear;
    private readonly AttentionJob _attention;

    // Working buffers (Meta's activations for one batch), allocated once: llama2.c's RunState.
    private readonly int _maxBatch;
    private readonly float[] _x, _xb, _q, _k, _v, _attnOut, _hb, _hb2;
    private readonly int[] _batchRows, _tokenPos;
    private readonly KvCache?[] _tokenCache;
    private readonly Memory<float>[] _rowScratch;

    private sealed class Layer
    {
        public required WeightTensor Wq, Wk, Wv, Wo, W1, W2, W3;
        public required float[] AttentionNorm, FfnNorm;
    }

    /// <summary>
    /// Prepares the model for inference; <paramref name="maxBatch"/> tokens go through one pass at most, on
    /// <paramref name="threads"/> threads (0: one per core), with the arithmetic <paramref name="precision"/> says; its
    /// caches (<see cref="CreateCache"/>) store keys and values as <paramref name="cacheType"/> says.
    /// </summary>
    /// <remarks>
    /// Where a matrix's type has a packed layout on this machine (<see cref="QuantType.Packed"/>: Q4_0, Q8_0, Q4_K and
    /// Q6_K on AVX-512) and
    /// <paramref name="packWeights"/> is true, the matrix is packed once here, as llama.cpp repacks Q4_0 at load, and the
    /// file's pages of it are given back to the system (<see cref="ModelFiles.ReleasePages"/>), so the packed copy
    /// (the same size) takes their place in memory rather than adding to it.
    /// </remarks>
    public Transformer(ModelFiles files, int maxBatch = 512, int threads = 0, ActivationPrecision precision = ActivationPrecision.Quantized,
        bool packWeights = true, KvCacheType cacheType = KvCacheType.F32)
    {
        Precision = precision;
        if (!Enum.IsDefined(cacheType)) throw new ArgumentOutOfRangeException(nameof(cacheType), cacheType, "not a cache type");
        CacheType = cacheType;
        if (threads < 0) throw new ArgumentOutOfRangeException(nameof(threads), threads, "threads must not be negative");
        Workers = threads == 0 ? Environment.ProcessorCount : threads;
        _pool = new WorkerPool(Workers);
        _linear = new LinearJob(this);
        _attention = new AttentionJob(this);
        _c = files.Config;
        _maxBatch = Math.Max(1, maxBatch);
        _tokEmbeddings = files.Get("tok_embeddings.weight");
        _output = _c.TiedEmbeddings ? _tokEmbeddings : files.Get("output.weight");
        _normWeight = ToFloats(files.Get("norm.weight"));
        _rotateHalf = files.QkLayout == QkLayout.RotateHalf;
        if (_c.HasRopeFreqsTensor && files.Find("rope.freqs") is { } f) _ropeFactors = ToFloats(f);
        _layers = new Layer[_c.Layers];
        for (int i = 0; i < _c.Layers; i++)
        {
            string p = $"layers.{i}.";
            _layers[i] = new Layer
            {
                Wq = files.Get(p + "attention.wq.weight"),
                Wk = files.Get(p + "attention.wk.weight"),
                Wv = files.Get(p + "attention.wv.weight"),
                Wo = files.Get(p + "attention.wo.weight"),
                W1 = files.Get(p + "feed_forward.w1.weight"),
                W2 = files.Get(p + "feed_forward.w2.weight"),
                W3 = files.Get(p + "feed_forward.w3.weight"),
                AttentionNorm = ToFloats(files.Get(p + "attention_norm.weight")),
                FfnNorm = ToFloats(files.Get(p + "ffn_norm.weight")),
            };
        }
        int qDim = _c.Heads * _c.HeadDim, kvDim = _c.KvHeads * _c.HeadDim, b = _maxBatch;
        _x = new float[b * _c.Dim];
        _xb = new float[b * Math.Max(_c.Dim, qDim)];
        _q = new float[b * qDim];
        _k = new float[b * kvDim];
        _v = new float[b * kvDim];
        _attnOut = new float[b * qDim];
        _hb = new float[b * _c.FfnDim];
        _hb2 = new float[b * _c.FfnDim];
        _batchRows = new int[b];
        _tokenPos = new int[b];
        _tokenCache = new KvCache?[b];
        int maxCols = Math.Max(Math.Max(_c.Dim, qDim), _c.FfnDim);
        _rowScratch = new Memory<float>[Workers];
        // A row for the dequantizing fallback; two blocks of 16 rows for F16 prompts' lanes kernel (MatMul.ScratchFloats).
        bool f16 = _output.Type == GgmlType.F16 || _layers.Any(l => new[] { l.Wq, l.Wk, l.Wv, l.Wo, l.W1, l.W2, l.W3 }.Any(w => w.Type == GgmlType.F16));
        int scratchFloats = b > 1 && f16 ? MatMul.ScratchFloats(maxCols) : maxCols;
        for (int w = 0; w < Workers; w++) _rowScratch[w] = AlignedFloats(scratchFloats);
        if (packWeights && precision == ActivationPrecision.Quantized)
            PackMatrices(files);
    }

    // Pinned floats from a 64-byte boundary: the lanes kernels load whole vectors of them, and a vector across two cache
    // lines costs two.
    private static Memory<float> AlignedFloats(int count)
    {
        var a = GC.AllocateArray<float>(count + 16, pinned: true);
        fixed (float* p = a)
        {
            int start = (int)(((64 - ((nint)p & 63)) & 63) / sizeof(float));
            return a.AsMemory(start, count);
        }
    }

    /// <summary>Whether <paramref name="w"/> is held packed (see the constructor).</summary>
    public bool IsPacked(WeightTensor w) => _packed.ContainsKey(w);

    // Packs each matrix whose type has a packed layout, on the workers, and gives the file's pages of it back (not the
    // token embeddings' when the output shares them: their rows are still read from the mapping).
    private void PackMatrices(ModelFiles files)
    {
        var matrices = _layers.SelectMany(l => new[] { l.Wq, l.Wk, l.Wv, l.Wo, l.W1, l.W2, l.W3 }).Append(_output)
            .Where(w => QuantTable.Get(w.Type).Packed is not null).Distinct(ReferenceEqualityComparer.Instance).Cast<WeightTensor>().ToList();
        if (matrices.Count == 0) return;
        // One buffer for all of them, each matrix at a page boundary. (Transparent huge pages, tried: decode no faster,
        // packing 4-10x slower.)
        const long page = 4096;
        long Size(WeightTensor w) => (QuantTable.Get(w.Type).Packed!.Bytes(w.Rows, checked((int)w.Columns)) + page - 1) / page * page;
        long total = matrices.Sum(Size);
        _packedBuffer = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)total, (nuint)page);
        var job = new PackJob();
        long offset = 0;
        foreach (var w in matrices)
        {
            byte* p = _packedBuffer + offset;
            offset += Size(w);
            _packed.Add(w, (nint)p);
            // Each slice's pages of the file are given back as soon as it is packed, so that memory grows by a slice at a
            // time, not by a whole matrix (the output's 200 MB in a 1B model).
            job.Prepare(w, QuantTable.Get(w.Type).Packed!, p, ReferenceEquals(w, _tokEmbeddings) ? null : files);
            _pool.Run(job, job.Chunks);
        }
    }

    /// <summary>One matrix packed in slices of whole groups of rows.</summary>
    private sealed class PackJob : IParallelJob
    {
        private WeightTensor _w = null!;
        private PackedLayout _layout = null!;
        private byte* _packed;
        private int _groups;
        private ModelFiles? _release;
        public int Chunks;

        public void Prepare(WeightTensor w, PackedLayout layout, byte* packed, ModelFiles? release)
        {
            _w = w;
            _layout = layout;
            _packed = packed;
            _release = release;
            _groups = checked((int)((w.Rows + layout.GroupRows - 1) / layout.GroupRows));
            Chunks = Math.Max(1, Math.Min(_groups, 64));
        }

        public void Execute(int chunk, int worker)
        {
            int g0 = (int)((long)_groups * chunk / Chunks), g1 = (int)((long)_groups * (chunk + 1) / Chunks);
            int rows = checked((int)_w.Rows), cols = checked((int)_w.Columns), rowBytes = checked((int)_w.RowBytes);
            int r0 = g0 * _layout.GroupRows, r1 = Math.Min(g1 * _layout.GroupRows, rows);
            if (r0 >= r1) return;
            long groupBytes = _layout.Bytes(_layout.GroupRows, cols);
            _layout.Pack(new ReadOnlySpan<byte>(_w.Data + (long)r0 * rowBytes, checked((r1 - r0) * rowBytes)), rowBytes, r1 - r0, cols,
                new Span<byte>(_packed + g0 * groupBytes, checked((int)((g1 - g0) * groupBytes))));
            // (A page shared with the next slice comes back from the page cache if that slice still reads it.)
            _release?.ReleasePages(_w, (long)r0 * rowBytes, (long)(r1 - r0) * rowBytes);
        }
    }

    /// <summary>How activations meet quantized weights.</summary>
    public ActivationPrecision Precision { get; }

    /// <summary>What the caches of <see cref="CreateCache"/> store keys and values as.</summary>
    public KvCacheType CacheType { get; }

    /// <summary>Threads a pass uses.</summary>
    public int Workers { get; }

    /// <summary>The model's configuration.</summary>
    public LlamaConfig Config => _c;

    /// <summary>Tokens one pass takes at most (longer inputs are split into passes).</summary>
    public int MaxBatch => _maxBatch;

    /// <summary>A KV cache of <see cref="CacheType"/> for <paramref name="context"/> positions (not the model's maximum unless asked).</summary>
    public KvCache CreateCache(int context) => new(_c, context, CacheType);

    /// <summary>Runs <paramref name="tokens"/> at positions <c>cache.Length...</c> and writes the last token's logits.</summary>
    public void Forward(ReadOnlySpan<int> tokens, KvCache cache, Span<float> logits)
    {
        Span<int> last = [tokens.Length - 1];
        Forward(tokens, cache, last, logits);
    }

    /// <summary>
    /// Runs <paramref name="tokens"/> through the model at positions <c>cache.Length ...</c>, appending their keys and
    /// values to the cache, and writes the logits of the tokens at indices <paramref name="logitRows"/> (ascending, into
    /// <paramref name="tokens"/>) to <paramref name="logits"/> (<c>logitRows.Length × vocab</c> floats).
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, KvCache cache, ReadOnlySpan<int> logitRows, Span<float> logits)
    {
        if (tokens.IsEmpty) throw new ArgumentException("no tokens to run", nameof(tokens));
        CheckRoom(cache, tokens.Length);
        Run(tokens, cache, null, logitRows, logits);
    }

    /// <summary>
    /// One pass over several sequences at once (batched decoding): <paramref name="tokens"/>[i] goes to
    /// <paramref name="caches"/>[i] at that cache's next position; tokens of the same sequence must appear in order.
    /// The weights are read once for all of them. Writes the logits of the tokens at <paramref name="logitRows"/>.
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, ReadOnlySpan<KvCache> caches, ReadOnlySpan<int> logitRows, Span<float> logits)
    {
        if (tokens.IsEmpty) throw new ArgumentException("no tokens to run", nameof(tokens));
        if (caches.Length != tokens.Length) throw new ArgumentException("one cache per token is needed", nameof(caches));
        foreach (var c in caches)
        {
            int count = 0;
            foreach (var d in caches) if (ReferenceEquals(c, d)) count++;
            CheckRoom(c, count);
        }
        Run(tokens, null, caches, logitRows, logits);
    }

    private static void CheckRoom(KvCache cache, int tokens)
    {
        if (cache.Length + tokens > cache.Context)
            throw new InvalidOperationException($"the context is full: {cache.Length} + {tokens} tokens exceed its {cache.Context} positions");
    }

    private void Run(ReadOnlySpan<int> tokens, KvCache? single, ReadOnlySpan<KvCache> perToken, ReadOnlySpan<int> logitRows, Span<float> logits)
    {
        if (logits.Length < logitRows.Length * _c.VocabSize)
            throw new ArgumentException($"the logits buffer holds {logits.Length} floats, {logitRows.Length * _c.VocabSize} needed", nameof(logits));
        foreach (int t in tokens)
            if ((uint)t >= (uint)_c.VocabSize) throw new ArgumentOutOfRangeException(nameof(tokens), t, $"token {t} is outside the vocabulary of {_c.VocabSize}");
        int maxContext = single?.Context ?? 0;
        foreach (var c in perToken) maxContext = Math.Max(maxContext, c.Context);
        EnsureRope(maxContext);

        int done = 0, rowsDone = 0;
        while (done < tokens.Length)
        {
            int n = Math.Min(_maxBatch, tokens.Length - done);
            // Each token's cache and position: the cache's next free slot, counting earlier tokens of this pass.
            for (int i = 0; i < n; i++)
            {
                var cache = single ?? perToken[done + i];
                int earlier = i;
                if (single is null)
                {
                    earlier = 0;
                    for (int j = 0; j < i; j++) if (ReferenceEquals(_tokenCache[j], cache)) earlier++;
                }
                _tokenCache[i] = cache;
                _tokenPos[i] = cache.Length + earlier;
            }
            int rowStart = rowsDone;
            while (rowsDone < logitRows.Length && logitRows[rowsDone] < done + n) rowsDone++;
            var rows = _batchRows.AsSpan(0, rowsDone - rowStart);
            for (int i = 0; i < rows.Length; i++) rows[i] = logitRows[rowStart + i] - done;
            ForwardBatch(tokens.Slice(done, n), rows, logits.Slice(rowStart * _c.VocabSize, rows.Length * _c.VocabSize));
            for (int i = 0; i < n; i++) _tokenCache[i]!.Length = Math.Max(_tokenCache[i]!.Length, _tokenPos[i] + 1);
            Array.Clear(_tokenCache, 0, n);
            done += n;
        }
    }

    private void EnsureRope(int context)
    {
        if (_rope is { } r && r.Positions >= context) return;
        _rope = new RopeTable(_c, context, _ropeFactors);
    }

    // One batch of n ≤ MaxBatch tokens, token i at _tokenPos[i] of _tokenCache[i]: Meta's Transformer.forward.
    private void ForwardBatch(ReadOnlySpan<int> tokens, ReadOnlySpan<int> logitRows, Span<float> logits)
    {
        int n = tokens.Length, dim = _c.Dim;
        var eps = (float)_c.NormEps;

        // h = self.tok_embeddings(tokens)
        var embType = QuantTable.Get(_tokEmbeddings.Type);
        for (int t = 0; t < n; t++)
            embType.Dequantize(_tokEmbeddings.Row(tokens[t]), _x.AsSpan(t * dim, dim));

        for (int l = 0; l < _layers.Length; l++)
        {
            var layer = _layers[l];
            // h = x + self.attention(self.attention_norm(x), start_pos, freqs_cis, mask)
            for (int t = 0; t < n; t++)
                Norm.RmsNorm(_x.AsSpan(t * dim, dim), layer.AttentionNorm, eps, _xb.AsSpan(t * dim, dim));
            Attention(l, layer, n);
            TensorPrimitives.Add(_x.AsSpan(0, n * dim), _xb.AsSpan(0, n * dim), _x.AsSpan(0, n * dim));

            // out = h + self.feed_forward(self.ffn_norm(h))
            for (int t = 0; t < n; t++)
                Norm.RmsNorm(_x.AsSpan(t * dim, dim), layer.FfnNorm, eps, _xb.AsSpan(t * dim, dim));
            FeedForward(layer, n);
            TensorPrimitives.Add(_x.AsSpan(0, n * dim), _xb.AsSpan(0, n * dim), _x.AsSpan(0, n * dim));
        }

        // h = self.norm(h); output = self.output(h).float()   (only for the rows asked for)
        for (int i = 0; i < logitRows.Length; i++)
            Norm.RmsNorm(_x.AsSpan(logitRows[i] * dim, dim), _normWeight, eps, _xb.AsSpan(i * dim, dim));
        if (logitRows.Length > 0) Linear(_output, _xb, logitRows.Length, logits);
    }

    // Meta's Attention.forward for n new tokens; the input is in _xb, the output goes back to _xb.
    private void Attention(int l, Layer w, int n)
    {
        int hd = _c.HeadDim, qDim = _c.Heads * hd, kvDim = _c.KvHeads * hd, group = _c.GroupSize;
        // xq, xk, xv = self.wq(x), self.wk(x), self.wv(x)
        Linear(w.Wq, _xb, n, _q);
        Linear(w.Wk, _xb, n, _k);
        Linear(w.Wv, _xb, n, _v);
        var rope = _rope!;
        for (int t = 0; t < n; t++)
        {
            // xq, xk = apply_rotary_emb(xq, xk, freqs_cis)
            int pos = _tokenPos[t];
            var cache = _tokenCache[t]!;
            var q = _q.AsSpan(t * qDim, qDim);
            var k = _k.AsSpan(t * kvDim, kvDim);
            if (_rotateHalf)
            {
                Rope.ApplyHalves(q, hd, rope.Cos(pos), rope.Sin(pos));
                Rope.ApplyHalves(k, hd, rope.Cos(pos), rope.Sin(pos));
            }
            else
            {
                Rope.ApplyInterleaved(q, hd, rope.Cos(pos), rope.Sin(pos));
                Rope.ApplyInterleaved(k, hd, rope.Cos(pos), rope.Sin(pos));
            }
            // self.cache_k[:bsz, start_pos : start_pos + seqlen] = xk (and xv)
            cache.Store(l, pos, k, _v.AsSpan(t * kvDim, kvDim));
        }

        // scores = softmax(xq · keysᵀ / sqrt(head_dim) + mask); output = scores · values. Each query head reads its
        // KV head's keys and values in place (repeat_kv without the copy); the mask is "only positions ≤ pos".
        int total = 0;
        for (int t = 0; t < n; t++) total = Math.Max(total, _tokenPos[t] + 1);
        _pool.Run(_attention, _attention.Prepare(l, n, total));

        // return self.wo(output)
        Linear(w.Wo, _attnOut, n, _xb);
    }

    // Meta's FeedForward.forward: w2(silu(w1(x)) * w3(x)); the input is in _xb, the output goes back to _xb.
    private void FeedForward(Layer w, int n)
    {
        Linear(w.W1, _xb, n, _hb);
        Linear(w.W3, _xb, n, _hb2);
        Activations.SiluMultiply(_hb.AsSpan(0, n * _c.FfnDim), _hb2.AsSpan(0, n * _c.FfnDim));
        Linear(w.W2, _hb, n, _xb);
    }

    // y[t] = W · x[t] for n rows, split over the cores by output rows.
    private void Linear(WeightTensor w, float[] x, int n, Span<float> y)
    {
        fixed (float* yp = y)
        {
            Linear(w, x, n, yp, y.Length);
        }
    }

    private void Linear(WeightTensor w, float[] x, int n, float* y, int yLength)
    {
        int rows = checked((int)w.Rows), cols = checked((int)w.Columns);
        var type = QuantTable.Get(w.Type);
        // Quantized weights: convert each activation row once to the type the weights' dot product takes (8-bit
        // blocks, as llama.cpp does), then integer dot products per weight row. Float weights keep float32 activations.
        bool quantized = Precision == ActivationPrecision.Quantized && type.BlockSize > 1;
        if (quantized)
        {
            int actBytes = checked((int)type.ActivationRowBytes(cols));
            if (_actQ.Length < n * actBytes) _actQ = new byte[n * actBytes];
            for (int t = 0; t < n; t++)
                type.QuantizeActivations(x.AsSpan(t * cols, cols), _actQ.AsSpan(t * actBytes, actBytes));
            _linear.ActivationBytes = actBytes;
        }
        _linear.Prepare(w, x, n, y, yLength, quantized, quantized && _packed.TryGetValue(w, out var packed) ? (byte*)packed : null);
        // Chunks of at least 16 rows, a few per worker so that faster cores take more.
        int chunks = Math.Max(1, Math.Min(rows / 16, Workers * 4));
        _linear.Chunks = chunks;
        _pool.Run(_linear, chunks);
    }

    /// <summary>Rows of one matrix product, split into chunks.</summary>
    private sealed class LinearJob(Transformer owner) : IParallelJob
    {
        private QuantType _type = null!;
        private byte* _data;
        private long _rowBytes;
        private int _rows, _cols, _n, _yLength;
        private float[] _x = [];
        private float* _y;
        private bool _quantized;
        private byte* _packed;
        public int Chunks;
        public int ActivationBytes;

        public void Prepare(WeightTensor w, float[] x, int n, float* y, int yLength, bool quantized, byte* packed)
        {
            _packed = packed;
            _type = QuantTable.Get(w.Type);
            _data = w.Data;
            _rowBytes = w.RowBytes;
            _rows = checked((int)w.Rows);
            _cols = checked((int)w.Columns);
            _x = x;
            _n = n;
            _y = y;
            _yLength = yLength;
            _quantized = quantized;
        }

        public void Execute(int chunk, int worker)
        {
            int start = (int)((long)_rows * chunk / Chunks), end = (int)((long)_rows * (chunk + 1) / Chunks);
            if (!_quantized)
            {
                MatMul.Rows(_type, _data, _rowBytes, start, end, _x.AsSpan(0, _n * _cols), _n, new Span<float>(_y, _yLength), _rows,
                    owner._rowScratch[worker].Span);
                return;
            }
            var act = owner._actQ;
            int rowBytes = checked((int)_rowBytes), ab = ActivationBytes;
            if (_packed != null)
            {
                // A packed matrix: the chunk's whole groups of rows, for any number of tokens (the scalar twin's bits).
                var layout = _type.Packed!;
                int groups = (_rows + layout.GroupRows - 1) / layout.GroupRows;
                int g0 = (int)((long)groups * chunk / Chunks), g1 = (int)((long)groups * (chunk + 1) / Chunks);
                int r0 = g0 * layout.GroupRows, r1 = Math.Min(g1 * layout.GroupRows, _rows);
                if (r0 >= r1) return;
                long groupBytes = layout.Bytes(layout.GroupRows, _cols);
                layout.Dot(new ReadOnlySpan<byte>(_packed + g0 * groupBytes, checked((int)((g1 - g0) * groupBytes))), r1 - r0,
                    act.AsSpan(0, _n * ab), ab, _n, _cols, new Span<float>(_y + r0, (_n - 1) * _rows + (r1 - r0)), _rows);
                return;
            }
            if (_n == 1)
            {
                var dot = _type.Dot;
                for (int r = start; r < end; r++)
                    _y[r] = dot(new ReadOnlySpan<byte>(_data + r * _rowBytes, rowBytes), act.AsSpan(0, ab), _cols);
                return;
            }
            // A prompt (8 tokens or more) where the type has a prompt kernel and the matrix is not packed (packWeights off):
            // the chunk's rows in groups of 16 arranged once for all the tokens (Q4_0 and Q8_0 on AVX-512: the scalar twin's
            // bits for every row and token).
            var prompt = _type.DotPrompt;
            if (prompt is not null && _n >= MatMul.LanesFrom)
            {
                int chunkRows = end - start;
                var results = new Span<float>(_y + start, (_n - 1) * _rows + chunkRows);
                prompt(new ReadOnlySpan<byte>(_data + start * _rowBytes, chunkRows * rowBytes), rowBytes, chunkRows, act.AsSpan(0, _n * ab), ab,
                    _n, _cols, results, _rows);
                return;
            }
            // Several tokens: each weight block is decoded once for up to 8 of them, and what depends only on the
            // activations once for the chunk's rows (bit-identical to Dot per row and token).
            // Blocks of rows meet every group of tokens in turn, so a block's weights are read from L2 (MatMul.RowBlock).
            var tile = _type.DotTile; // read once: the default is a new delegate per read
            for (int r0 = start; r0 < end; r0 += MatMul.RowBlock)
            {
                int rows = Math.Min(MatMul.RowBlock, end - r0);
                var weights = new ReadOnlySpan<byte>(_data + r0 * _rowBytes, rows * rowBytes);
                for (int t0 = 0; t0 < _n; t0 += 8)
                {
                    int count = Math.Min(8, _n - t0);
                    var results = new Span<float>(_y + (long)t0 * _rows + r0, (count - 1) * _rows + rows);
                    tile(weights, rowBytes, rows, act.AsSpan(t0 * ab, count * ab), ab, count, _cols, results, _rows);
                }
            }
        }
    }

    /// <summary>
    /// One KV head of attention for a run of tokens: scores = q · keysᵀ / sqrt(head_dim) over the positions up to each
    /// token's, softmax, then the weighted sum of values; the group of query heads that share the KV head reads its
    /// cache in place (repeat_kv without the copy), and "only positions ≤ pos" is the causal mask. A prompt's tokens
    /// go in tiles of several tokens, so a block of the cache is read once for all of them (AttentionKernel.Tokens.cs;
    /// the same bits as one token at a time).
    /// </summary>
    private sealed class AttentionJob(Transformer owner) : IParallelJob
    {
        /// <summary>Most tokens in one tile; fewer where their scores would pass <see cref="TileScores"/> floats.</summary>
        private const int TileTokens = 16;

        /// <summary>Floats of scores one tile keeps (4 MiB): 16 tokens of 4 query heads up to 16,384 positions.</summary>
        private const int TileScores = 1 << 20;

        private int _layer, _n, _tile;
        private float[][] _scores = [];

        /// <summary>Readies layer <paramref name="layer"/> for <paramref name="n"/> tokens seeing up to <paramref name="positions"/> positions; returns the job count.</summary>
        public int Prepare(int layer, int n, int positions)
        {
            int group = owner._c.GroupSize;
            _layer = layer;
            _n = n;
            _tile = Math.Clamp(TileScores / (group * positions), 1, Math.Min(TileTokens, n));
            int tiles = (n + _tile - 1) / _tile;
            int need = _tile * group * positions;
            if (_scores.Length != owner.Workers || _scores[0].Length < need)
            {
                // Grown by doubling: decode asks for a few more floats every token.
                int size = Math.Max(need, _scores.Length == owner.Workers ? 2 * _scores[0].Length : 1024);
                _scores = new float[owner.Workers][];
                for (int w = 0; w < _scores.Length; w++) _scores[w] = new float[size];
            }
            return tiles * owner._c.KvHeads;
        }

        // One (tile of tokens, KV head): each run of the tile's tokens that share a cache together.
        public void Execute(int job, int worker)
        {
            int kvHeads = owner._c.KvHeads, kvh = job % kvHeads, t0 = job / kvHeads * _tile;
            int t1 = Math.Min(t0 + _tile, _n);
            for (int t = t0; t < t1;)
            {
                var cache = owner._tokenCache[t]!;
                int end = t + 1;
                while (end < t1 && ReferenceEquals(owner._tokenCache[end], cache)) end++;
                Run(t, end - t, kvh, cache, _scores[worker]);
                t = end;
            }
        }

        private void Run(int t0, int count, int kvh, KvCache cache, float[] scoreBuffer)
        {
            var c = owner._c;
            int hd = c.HeadDim, qDim = c.Heads * hd, group = c.GroupSize;
            Span<int> positions = stackalloc int[count];
            int most = 0;
            for (int i = 0; i < count; i++) most = Math.Max(most, positions[i] = owner._tokenPos[t0 + i] + 1);
            int tokenStride = group * most;
            var scores = scoreBuffer.AsSpan(0, count * tokenStride);
            // This KV head's positions, one after another (KvCache.HeadStart).
            int head = cache.HeadStart(kvh), length = most * hd, at = t0 * qDim + kvh * group * hd;
            var q = owner._q.AsSpan(at, (count - 1) * qDim + group * hd);
            var output = owner._attnOut.AsSpan(at, (count - 1) * qDim + group * hd);
            bool f16 = cache.Type == KvCacheType.F16;
            if (f16) AttentionKernel.Scores(q, qDim, positions, group, hd, cache.KLayer16(_layer).AsSpan(head, length), MathF.Sqrt(hd), scores, tokenStride, most);
            else AttentionKernel.Scores(q, qDim, positions, group, hd, cache.KLayer(_layer).AsSpan(head, length), MathF.Sqrt(hd), scores, tokenStride, most);
            // softmax, then · values: the weights exponentiated in one pass, the weighted sum divided by their total.
            Span<float> sums = stackalloc float[count * group];
            for (int i = 0; i < count; i++)
                for (int g = 0; g < group; g++)
                    sums[i * group + g] = Activations.ExpShifted(scores.Slice(i * tokenStride + g * most, positions[i]));
            if (f16) AttentionKernel.WeightedSum(scores, tokenStride, most, positions, group, cache.VLayer16(_layer).AsSpan(head, length), hd, output, qDim);
            else AttentionKernel.WeightedSum(scores, tokenStride, most, positions, group, cache.VLayer(_layer).AsSpan(head, length), hd, output, qDim);
            for (int i = 0; i < count; i++)
                for (int g = 0; g < group; g++)
                {
                    var o = output.Slice(i * qDim + g * hd, hd);
                    TensorPrimitives.Multiply(o, 1f / sums[i * group + g], o);
                }
        }
    }

    /// <summary>Stops the worker threads.</summary>
    public void Dispose()
    {
        _pool.Dispose();
        _packed.Clear();
        if (_packedBuffer != null) System.Runtime.InteropServices.NativeMemory.AlignedFree(_packedBuffer);
        _packedBuffer = null;
    }

    /// <summary>
    /// Runs <c>job.Execute(i, worker)</c> for every i in [0, <paramref name="count"/>) on the model's workers (the
    /// caller is worker 0), between passes: per-sequence work such as sampling several sequences' next tokens.
    /// </summary>
    public void RunParallel(IParallelJob job, int count) => _pool.Run(job, count);

    private static float[] ToFloats(WeightTensor t)
    {
        var f = new float[t.ElementCount];
        QuantTable.Get(t.Type).Dequantize(t.Bytes, f);
        return f;
    }
}
