using Llama3.Kernels.Simd;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Llama3.Generation;

/// <summary>
/// The sampling chain that turns one position's logits into a token id. One sampler serves one sequence (it holds the
/// random state and its buffers; it is not thread-safe), and every buffer is allocated here, once, so
/// <see cref="Sample"/> allocates nothing.
/// </summary>
/// <remarks>
/// <para>The chain, in order (llama.cpp's default order of the stages we have, with Meta's placement of temperature):</para>
/// <list type="number">
/// <item><description>Penalties over the last <see cref="SamplerOptions.PenaltyWindow"/> tokens of the history:
/// repetition as CTRL and llama.cpp (<c>llama_sampler_penalties_apply</c>: a positive logit divided by the penalty, a
/// negative or zero one multiplied, once per distinct token), then frequency and presence as OpenAI (<c>logit -= count *
/// frequency + (count &gt; 0) * presence</c>). The logits are changed in place and hold the penalized values on return.</description></item>
/// <item><description>Temperature 0: the argmax, ties to the lowest id; nothing below runs and no random number is drawn.</description></item>
/// <item><description>Top-k: the k largest logits (equal logits: lower id first).</description></item>
/// <item><description>Temperature and softmax, as Meta's <c>torch.softmax(logits / temperature)</c>. Temperature comes
/// before top-p as in Meta's <c>generate</c>, so the nucleus is taken from the tempered distribution (llama.cpp's
/// default chain applies temperature last).</description></item>
/// <item><description>Top-p with Meta's <c>sample_top_p</c>: sort the probabilities descending, cumulative sum, mask
/// every token where <c>probs_sum - probs_sort &gt; p</c>. In exact arithmetic that keeps the shortest prefix whose mass
/// exceeds p (a token whose preceding mass equals p stays), and always the most likely token. We compute the mask in
/// float32 as PyTorch does on the CPU (the cumulative sum accumulated in double and stored as float, the subtraction and
/// comparison in float), so a tie rounds as it does there. The first masked token ends the kept prefix (Meta masks token
/// by token; after a masked one, float rounding could unmask a later one only if the token between had a probability
/// below about 1e-7). Skipped when p is 1, where it keeps everything.</description></item>
/// <item><description>Min-p: drop tokens whose probability is below <see cref="SamplerOptions.MinP"/> times the
/// largest (llama.cpp's min-p, here on the tempered distribution).</description></item>
/// <item><description>Draw: one uniform double from xoshiro256** (<see cref="SamplerRandom"/>) per call, against the
/// renormalized survivors.</description></item>
/// </list>
/// <para>Reproducibility: the softmax weights come from our own exp (<see cref="Activations.ExpScalar"/>: cephes' <c>expf</c> in
/// plain IEEE float arithmetic, its vector form bit-identical lane by lane) and every sum runs in an order our code
/// fixes, never one that depends on the vector width or a C library; so given the same logits and seed every machine
/// draws the same tokens.</para>
/// <para>Cost: O(V) for penalties, max and softmax. Top-k and top-p never sort the vocabulary. Top-k gathers the first
/// buckets of a histogram of distances below the maximum that hold k tokens, selects k of them and sorts those
/// (O(V + k log k)). Top-p gathers the tokens above the largest power-of-two weight whose mass exceeds p (a histogram of
/// the weights' exponents tells it), then selects and sorts growing chunks of them, most likely first, until Meta's mask
/// stops: O(V + kept log kept) when the kept tokens are not crowded by near-equal ones; a flat distribution that keeps
/// most of the vocabulary costs a sort of what it keeps, as Meta's full sort would.</para>
/// </remarks>
public sealed class Sampler
{
    /// <summary>The first chunk top-p sorts; it doubles until a token is masked.</summary>
    private const int TopPFirstChunk = 64;

    /// <summary>
    /// How far above p the mass of the gathered tokens must be before top-p trusts that every kept token is among them.
    /// The float32 mask (sums of float probabilities, each with relative error below 1e-7) cannot move a mass this far.
    /// </summary>
    private const double TopPMargin = 1e-4;

    /// <summary>
    /// Buckets of the histogram top-k uses to find how far below the maximum its tokens can lie: bucket b holds the
    /// tokens whose logit is [b, b + 1) / <see cref="BucketsPerUnit"/> below the maximum; the last one everything further down.
    /// </summary>
    private const int Buckets = 512;

    private const float BucketsPerUnit = 8f;

    /// <summary>Top-p's histogram: one bucket per binary exponent of a weight in (0, 1], e^-86 &gt; 2^-125, and one for 0.</summary>
    private const int ExponentBuckets = 128;

    private readonly SamplerOptions _options;
    private readonly int _vocab;
    private readonly int[] _counts;     // per id: occurrences in the penalty window; all zero between calls
    private readonly int[] _seen;       // the distinct ids of the penalty window, in order of first occurrence
    private readonly ulong[] _keys;     // candidates as Key(logit or weight, id): ascending = most likely first, then id
    private readonly float[] _weights;  // per id: exp((logit - max) / temperature) of the current call
    private readonly ulong[] _top;      // SampleWithLogprobs: the best keys so far, ascending
    private readonly int[] _bucketCounts = new int[Buckets];
    private readonly double[] _exponentMass = new double[4 * ExponentBuckets];
    private SamplerRandom _random;

    /// <summary>Validates <paramref name="options"/> and allocates the buffers for a vocabulary of <paramref name="vocabSize"/>.</summary>
    public Sampler(SamplerOptions options, int vocabSize)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (vocabSize <= 0) throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, "the vocabulary size must be positive");
        _options = options;
        _vocab = vocabSize;
        _counts = new int[vocabSize];
        _seen = new int[vocabSize];
        _keys = new ulong[vocabSize];
        _weights = new float[vocabSize];
        _top = new ulong[SamplerOptions.MaxTopLogprobs];
        _random = new SamplerRandom(options.Seed ?? OsSeed());
    }

    /// <summary>The settings this sampler was made with.</summary>
    public SamplerOptions Options => _options;

    /// <summary>The vocabulary size: the length every logits span must have.</summary>
    public int VocabSize => _vocab;

    /// <summary>
    /// Runs the chain on <paramref name="logits"/> (changed in place: on return they hold the penalized logits, so pass a
    /// scratch copy) and returns the chosen id. <paramref name="history"/> is every token before this position (prompt and
    /// generated); only the penalties read it. Allocates nothing.
    /// </summary>
    /// <exception cref="ArgumentException">The logits are not <see cref="VocabSize"/> long or one is NaN.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token of the penalty window is outside the vocabulary.</exception>
    /// <exception cref="InvalidOperationException">Every logit is -infinity.</exception>
    public int Sample(Span<float> logits, ReadOnlySpan<int> history)
    {
        CheckLogits(logits);
        ApplyPenalties(logits, history);
        return Choose(logits);
    }

    /// <summary>
    /// <see cref="Sample"/>, and the log-probabilities OpenAI's <c>logprobs</c> reports. The log-probability of a token is
    /// the log-softmax, over the whole vocabulary, of the logits after the penalties and before temperature, top-k,
    /// top-p and min-p: the model's distribution (with the penalties the request asked for), which is what OpenAI
    /// reports, rather than the probabilities after the sampling stages, which llama.cpp's server reports. It does not
    /// depend on temperature or truncation and is finite for every token with a finite logit, also for tokens the
    /// truncation could not pick. Allocates only the result's array of <see cref="SamplerOptions.TopLogprobs"/> entries.
    /// </summary>
    /// <exception cref="ArgumentException">The logits are not <see cref="VocabSize"/> long or one is NaN.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token of the penalty window is outside the vocabulary.</exception>
    /// <exception cref="InvalidOperationException">Every logit is -infinity.</exception>
    public SampledToken SampleWithLogprobs(Span<float> logits, ReadOnlySpan<int> history)
    {
        CheckLogits(logits);
        ApplyPenalties(logits, history);

        // log-softmax at temperature 1: logZ = log sum exp(logit - max), summed in the order SumInOrder fixes.
        float max = MaxLogit(logits);
        Weights(logits, max, 1f, _weights);
        double logZ = Math.Log(SumInOrder(_weights));

        int n = Math.Min(_options.TopLogprobs, _vocab);
        int count = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            ulong key = Key(logits[i], i);
            if (count == n && (n == 0 || key >= _top[n - 1])) continue;
            int j = count == n ? n - 2 : count++ - 1; // full: the last one drops out
            while (j >= 0 && _top[j] > key)
            {
                _top[j + 1] = _top[j];
                j--;
            }
            _top[j + 1] = key;
        }
        var top = n == 0 ? Array.Empty<TokenLogprob>() : new TokenLogprob[n];
        for (int i = 0; i < n; i++)
        {
            int id = IdOf(_top[i]);
            top[i] = new TokenLogprob(id, Logprob(logits[id], max, logZ));
        }

        // The chain only reads the penalized logits (it writes its own buffers), so logits[chosen] is still the value the
        // log-softmax was taken of.
        int chosen = Choose(logits);
        return new SampledToken(chosen, Logprob(logits[chosen], max, logZ), top);
    }

    /// <summary>
    /// For tests: runs the penalties and the chain up to the draw, writes the surviving ids in draw order with their
    /// renormalized probabilities, and returns how many there are. Draws nothing.
    /// </summary>
    internal int Candidates(Span<float> logits, ReadOnlySpan<int> history, Span<int> ids, Span<double> probs)
    {
        CheckLogits(logits);
        ApplyPenalties(logits, history);
        if (_options.Temperature == 0f)
        {
            ids[0] = Argmax(logits);
            probs[0] = 1;
            return 1;
        }
        int n = Filter(logits, out bool sorted, out float floor);
        double total = 0;
        int kept = 0;
        for (int i = 0; i < n; i++)
        {
            int id = sorted ? IdOf(_keys[i]) : i;
            float w = _weights[id];
            if (w > 0 && w >= floor)
            {
                ids[kept++] = id;
                total += w;
            }
        }
        for (int i = 0; i < kept; i++) probs[i] = _weights[ids[i]] / total;
        return kept;
    }

    private void CheckLogits(ReadOnlySpan<float> logits)
    {
        if (logits.Length != _vocab)
            throw new ArgumentException($"expected {_vocab} logits (the vocabulary size), got {logits.Length}", nameof(logits));
        for (int i = 0; i < logits.Length; i++)
            if (float.IsNaN(logits[i]))
                throw new ArgumentException($"logit {i} is NaN", nameof(logits));
    }

    /// <summary>Repetition, frequency and presence penalties, as llama.cpp's <c>llama_sampler_penalties_apply</c>.</summary>
    private void ApplyPenalties(Span<float> logits, ReadOnlySpan<int> history)
    {
        var o = _options;
        if (o.RepeatPenalty == 1f && o.FrequencyPenalty == 0f && o.PresencePenalty == 0f) return;
        int window = o.PenaltyWindow < 0 ? history.Length : Math.Min(o.PenaltyWindow, history.Length);
        int first = history.Length - window;
        var recent = history[first..];

        int distinct = 0;
        for (int i = 0; i < recent.Length; i++)
        {
            int id = recent[i];
            if ((uint)id >= (uint)_vocab)
            {
                for (int j = 0; j < distinct; j++) _counts[_seen[j]] = 0;
                throw new ArgumentOutOfRangeException(nameof(history), id,
                    $"history token {first + i} is {id}, outside the vocabulary of {_vocab}");
            }
            if (_counts[id]++ == 0) _seen[distinct++] = id;
        }

        for (int j = 0; j < distinct; j++)
        {
            int id = _seen[j];
            int count = _counts[id];
            _counts[id] = 0;
            float logit = logits[id];
            // CTRL divides; llama.cpp multiplies negative logits instead, so the penalty never makes a token more likely.
            logit = logit <= 0f ? logit * o.RepeatPenalty : logit / o.RepeatPenalty;
            logits[id] = logit - (count * o.FrequencyPenalty + (count > 0 ? 1f : 0f) * o.PresencePenalty);
        }
    }

    private int Choose(ReadOnlySpan<float> logits)
    {
        if (_options.Temperature == 0f) return Argmax(logits);
        int n = Filter(logits, out bool sorted, out float floor);
        return Draw(n, sorted, floor, _random.NextDouble());
    }

    /// <summary>The first index of the largest logit.</summary>
    private static int Argmax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        float max = logits[0];
        for (int i = 1; i < logits.Length; i++)
        {
            if (logits[i] > max)
            {
                max = logits[i];
                best = i;
            }
        }
        if (max == float.NegativeInfinity) throw AllMasked();
        return best;
    }

    private static float MaxLogit(ReadOnlySpan<float> logits)
    {
        float max = float.NegativeInfinity;
        for (int i = 0; i < logits.Length; i++)
            if (logits[i] > max) max = logits[i];
        if (max == float.NegativeInfinity) throw AllMasked();
        return max;
    }

    private static InvalidOperationException AllMasked() => new("every logit is -infinity: no token can be sampled");

    /// <summary>
    /// Top-k, temperature and softmax, top-p, min-p. Leaves the weights of the candidates in <see cref="_weights"/> and
    /// returns how many candidates there are: when <paramref name="sorted"/>, the first n of <see cref="_keys"/> (most
    /// likely first); otherwise every id, of which those with a weight below <paramref name="floor"/> are dropped.
    /// </summary>
    private int Filter(ReadOnlySpan<float> logits, out bool sorted, out float floor)
    {
        var o = _options;
        float max = MaxLogit(logits);
        int n = _vocab;
        sorted = false;
        if (o.TopK > 0 && o.TopK < _vocab)
        {
            n = o.TopK;
            // The tokens in the first buckets are the first in key order; the first buckets that hold k or more tokens
            // hold the top k, so only they are gathered and selected from.
            Array.Clear(_bucketCounts);
            for (int i = 0; i < _vocab; i++) _bucketCounts[Bucket(logits[i], max)]++;
            int last = 0, count = _bucketCounts[0];
            while (count < n) count += _bucketCounts[++last];
            SelectSmallest(_keys.AsSpan(0, Gather(logits, max, last)), n);
            sorted = true;
        }

        // Meta: probs = torch.softmax(logits / temperature, dim=-1); z, the normalizer, is summed in a fixed order.
        float t = o.Temperature;
        double z;
        if (sorted)
        {
            // The k survivors, re-keyed by weight and sorted: most likely first, as every later stage reads them.
            for (int i = 0; i < n; i++)
            {
                int id = IdOf(_keys[i]);
                float w = _weights[id] = Weight(logits[id], max, t);
                _keys[i] = Key(w, id);
            }
            _keys.AsSpan(0, n).Sort();
            z = 0;
            for (int i = 0; i < n; i++) z += _weights[IdOf(_keys[i])];
        }
        else
        {
            Weights(logits, max, t, _weights);
            z = SumInOrder(_weights);
        }

        if (o.TopP < 1f)
        {
            if (sorted)
            {
                double cum = 0;
                n = TopPWalk(0, n, z, o.TopP, ref cum, out _);
            }
            else
            {
                n = TopPGathered(z, o.TopP);
                sorted = true;
            }
        }

        // Min-p: the most likely candidate has weight exp(0) = 1, so the floor on weights is min_p itself.
        floor = o.MinP;
        if (sorted)
        {
            // Weights fall along the sorted candidates; the first always stays (1 >= min_p).
            while (n > 1 && _weights[IdOf(_keys[n - 1])] < floor) n--;
        }
        return n;
    }

    /// <summary>Top-k's histogram bucket of a logit: its distance below the maximum times <see cref="BucketsPerUnit"/>.</summary>
    private static int Bucket(float logit, float max)
    {
        if (logit == max) return 0; // also when the maximum is +infinity
        float d = (max - logit) * BucketsPerUnit;
        return d < Buckets - 1 ? (int)d : Buckets - 1;
    }

    /// <summary>Writes the keys of the tokens in buckets 0 to <paramref name="last"/> to <see cref="_keys"/>; returns how many.</summary>
    private int Gather(ReadOnlySpan<float> logits, float max, int last)
    {
        int c = 0;
        for (int i = 0; i < logits.Length; i++)
            if (Bucket(logits[i], max) <= last) _keys[c++] = Key(logits[i], i);
        return c;
    }

    /// <summary>
    /// Top-p over every id without sorting the vocabulary. A histogram of the weights' mass by binary exponent (weight in
    /// [2^-b, 2^-b+1) for bucket b; 0 in the last) tells the largest threshold 2^-b whose tokens hold more than p of the
    /// mass by <see cref="TopPMargin"/>. Those tokens come first in Meta's order and every later one is masked (the mass
    /// before it is at least theirs), so only they are gathered and ordered. Returns the kept count; <see cref="_keys"/>
    /// starts with them, sorted.
    /// </summary>
    private int TopPGathered(double z, float p)
    {
        // Four interleaved histograms, so runs of tokens in one bucket do not wait on each other's stores.
        Array.Clear(_exponentMass);
        for (int i = 0; i < _vocab; i++)
        {
            float w = _weights[i];
            _exponentMass[(ExponentBucket(w) << 2) | (i & 3)] += w;
        }
        double need = (p + TopPMargin) * z, mass = 0;
        int last = 0;
        for (; last < ExponentBuckets - 1; last++)
        {
            int b = last << 2;
            mass += (_exponentMass[b] + _exponentMass[b + 1]) + (_exponentMass[b + 2] + _exponentMass[b + 3]);
            if (mass >= need) break;
        }
        // The threshold of the last bucket is 0: every token, whatever its mass.
        float threshold = last == ExponentBuckets - 1 ? 0f : BitConverter.Int32BitsToSingle((127 - last) << 23);
        int c = 0;
        for (int i = 0; i < _vocab; i++)
            if (_weights[i] >= threshold) _keys[c++] = Key(_weights[i], i);
        return TopPSelect(c, z, p, out _);
    }

    /// <summary>
    /// 127 minus the binary exponent of a weight in (0, 1] (so [2^-b, 2^-b+1) is bucket b; 1 is bucket 0), and the last
    /// bucket for 0. Weights are 0 or normal floats (<see cref="Activations.ExpCut"/>), so the exponent field says it all.
    /// </summary>
    private static int ExponentBucket(float w) => 127 - (int)(BitConverter.SingleToUInt32Bits(w) >> 23);

    /// <summary>
    /// Orders the first <paramref name="n"/> keys chunk by chunk: selects the next chunk of most likely tokens
    /// (<see cref="SelectSmallest"/> over the rest), sorts only that chunk and walks Meta's mask along it; the chunk
    /// doubles until a token is masked or the candidates run out. Returns the kept count.
    /// </summary>
    private int TopPSelect(int n, double z, float p, out bool masked)
    {
        double cum = 0;
        int start = 0, chunk = TopPFirstChunk;
        while (true)
        {
            int end = (int)Math.Min(n, (long)start + chunk);
            if (end < n) SelectSmallest(_keys.AsSpan(start, n - start), end - start);
            _keys.AsSpan(start, end - start).Sort();
            int kept = TopPWalk(start, end, z, p, ref cum, out masked);
            if (masked || end == n) return kept;
            start = end;
            chunk *= 2;
        }
    }

    /// <summary>
    /// Walks Meta's top-p mask along the sorted candidates [start, end) of <see cref="_keys"/>, carrying the cumulative
    /// sum in <paramref name="cum"/>. Returns the index of the first masked candidate, or <paramref name="end"/>.
    /// </summary>
    private int TopPWalk(int start, int end, double z, float p, ref double cum, out bool masked)
    {
        for (int i = start; i < end; i++)
        {
            float prob = (float)(_weights[IdOf(_keys[i])] / z);
            if (TopPMasks(ref cum, prob, p))
            {
                masked = true;
                return i;
            }
        }
        masked = false;
        return end;
    }

    /// <summary>
    /// One token of Meta's <c>sample_top_p</c> mask: adds <paramref name="prob"/> to the cumulative sum (accumulated in
    /// double, read as float, as PyTorch's CPU <c>cumsum</c> does for float32) and says whether
    /// <c>probs_sum - probs_sort &gt; p</c> in float32. The first token is never masked (0 &gt; p is false).
    /// </summary>
    private static bool TopPMasks(ref double cum, float prob, float p)
    {
        cum += prob;
        float probsSum = (float)cum;
        return probsSum - prob > p;
    }

    /// <summary>For tests: how many of <paramref name="sortedProbs"/> (descending) Meta's top-p mask keeps.</summary>
    internal static int TopPKeptCount(ReadOnlySpan<float> sortedProbs, float p)
    {
        double cum = 0;
        for (int i = 0; i < sortedProbs.Length; i++)
            if (TopPMasks(ref cum, sortedProbs[i], p)) return i;
        return sortedProbs.Length;
    }

    /// <summary>
    /// Draws one candidate with probability proportional to its weight: the first whose running sum exceeds u times the
    /// total, in draw order (most likely first when sorted, else by id); weights below the floor do not take part.
    /// </summary>
    private int Draw(int n, bool sorted, float floor, double u)
    {
        double total = 0;
        for (int i = 0; i < n; i++)
        {
            float w = _weights[sorted ? IdOf(_keys[i]) : i];
            if (w >= floor) total += w;
        }

        double target = u * total, cum = 0;
        int last = -1;
        for (int i = 0; i < n; i++)
        {
            int id = sorted ? IdOf(_keys[i]) : i;
            float w = _weights[id];
            if (!(w > 0f && w >= floor)) continue;
            cum += w;
            last = id;
            if (cum > target) return id;
        }
        return last; // the running sum can end a rounding error short of u * total
    }

    /// <summary>Sums in a fixed order (four interleaved double accumulators), the same on every machine.</summary>
    internal static double SumInOrder(ReadOnlySpan<float> values)
    {
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int i = 0;
        for (; i + 4 <= values.Length; i += 4)
        {
            s0 += values[i];
            s1 += values[i + 1];
            s2 += values[i + 2];
            s3 += values[i + 3];
        }
        for (; i < values.Length; i++) s0 += values[i];
        return (s0 + s1) + (s2 + s3);
    }

    /// <summary>exp((logit - max) / temperature); exactly 1 for the maximum, also when it is +infinity.</summary>
    internal static float Weight(float logit, float max, float temperature) =>
        logit == max ? 1f : Activations.ExpScalar((logit - max) / temperature);

    private static float Logprob(float logit, float max, double logZ) =>
        (float)((logit == max ? 0.0 : (double)logit - max) - logZ);

    /// <summary>
    /// <see cref="Weight"/> of every logit: <see cref="Activations.ExpScalar"/> in <see cref="Vector{T}"/> lanes, the same operations
    /// in the same order, so each lane's bits equal the scalar twin's whatever the vector width.
    /// </summary>
    internal static void Weights(ReadOnlySpan<float> logits, float max, float temperature, Span<float> weights)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && float.IsFinite(max))
        {
            var vl = MemoryMarshal.Cast<float, Vector<float>>(logits);
            var vw = MemoryMarshal.Cast<float, Vector<float>>(weights);
            var vmax = new Vector<float>(max);
            var vt = new Vector<float>(temperature);
            for (int v = 0; v < vl.Length; v++) vw[v] = Activations.ExpVector((vl[v] - vmax) / vt);
            i = vl.Length * Vector<float>.Count;
        }
        for (; i < logits.Length; i++) weights[i] = Weight(logits[i], max, temperature);
    }

    /// <summary>
    /// A candidate as one integer that sorts as we rank tokens: the bits of its logit (top-k) or weight (after the
    /// softmax) mapped to an order descending in that value (high half), then the id ascending (low half). Every key is distinct, so selection and sorting have one
    /// answer, and sorting them (<see cref="MemoryExtensions.Sort{T}(Span{T})"/> on ulong) allocates nothing.
    /// </summary>
    internal static ulong Key(float logit, int id)
    {
        if (logit == 0f) logit = 0f; // -0 and +0 are the same logit: they tie on the id
        uint bits = BitConverter.SingleToUInt32Bits(logit);
        // Ascending in the float's value: flip every bit of a negative number, only the sign bit of a positive one.
        uint ascending = bits ^ ((uint)((int)bits >> 31) | 0x8000_0000u);
        return ((ulong)~ascending << 32) | (uint)id;
    }

    internal static int IdOf(ulong key) => (int)(uint)key;

    /// <summary>
    /// Rearranges <paramref name="keys"/> so its first <paramref name="k"/> elements are its k smallest, in no particular
    /// order: Hoare's quickselect with a median-of-three pivot, falling back to sorting what is left after
    /// 2 log2(n) + 8 rounds, so the worst case stays O(n log n) (the introselect idea, Musser 1997).
    /// </summary>
    internal static void SelectSmallest(Span<ulong> keys, int k)
    {
        if (k <= 0 || k >= keys.Length) return;
        int target = k - 1, lo = 0, hi = keys.Length - 1;
        int budget = 2 * BitOperations.Log2((uint)keys.Length) + 8;
        while (hi > lo)
        {
            if (budget-- == 0)
            {
                keys[lo..(hi + 1)].Sort();
                return;
            }
            int mid = lo + (hi - lo) / 2;
            if (keys[mid] < keys[lo]) (keys[mid], keys[lo]) = (keys[lo], keys[mid]);
            if (keys[hi] < keys[lo]) (keys[hi], keys[lo]) = (keys[lo], keys[hi]);
            if (keys[hi] < keys[mid]) (keys[hi], keys[mid]) = (keys[mid], keys[hi]);
            ulong pivot = keys[mid];
            int i = lo, j = hi;
            while (i <= j)
            {
                while (keys[i] < pivot) i++;
                while (keys[j] > pivot) j--;
                if (i <= j)
                {
                    (keys[i], keys[j]) = (keys[j], keys[i]);
                    i++;
                    j--;
                }
            }
            // Now [lo, j] <= pivot <= [i, hi]; anything strictly between j and i equals the pivot and is in place.
            if (target <= j) hi = j;
            else if (target >= i) lo = i;
            else return;
        }
    }

    private static ulong OsSeed()
    {
        Span<byte> bytes = stackalloc byte[8];
        RandomNumberGenerator.Fill(bytes);
        return BitConverter.ToUInt64(bytes);
    }
}
