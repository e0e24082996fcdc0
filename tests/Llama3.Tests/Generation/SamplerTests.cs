using Llama3.Generation;

namespace Llama3.Tests.Generation;

public class SamplerTests
{
    private const int LlamaVocab = 128256;

    private static float[] LogitsOf(params double[] probs) => probs.Select(p => p == 0 ? float.NegativeInfinity : (float)Math.Log(p)).ToArray();

    private static double Normal(Random rng) =>
        Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());

    private static float[] RandomLogits(Random rng, int n, double scale) =>
        Enumerable.Range(0, n).Select(_ => (float)(scale * Normal(rng))).ToArray();

    /// <summary>Logits shaped like a language model's: a normal bulk and a few tokens well above it.</summary>
    private static float[] PeakedLogits(Random rng, int n)
    {
        var logits = RandomLogits(rng, n, 2.5);
        for (int i = 0; i < Math.Min(10, n); i++) logits[rng.Next(n)] = 12 + i;
        return logits;
    }

    private static int[] Kept(Sampler sampler, float[] logits, ReadOnlySpan<int> history, out double[] probs)
    {
        var ids = new int[logits.Length];
        probs = new double[logits.Length];
        int n = sampler.Candidates((float[])logits.Clone(), history, ids, probs);
        probs = probs[..n];
        return ids[..n];
    }

    // ---------------------------------------------------------------- greedy

    [Fact]
    public void GreedyPicksTheArgmaxAndTheLowestIdOnTies()
    {
        var s = new Sampler(SamplerOptions.Greedy, 5);
        Assert.Equal(1, s.Sample(new float[] { 1, 3, 2, 3, -1 }, []));
        Assert.Equal(4, s.Sample(new float[] { 1, 3, 2, 3, 7 }, []));
        Assert.Equal(0, s.Sample(new float[] { 5, 5, 5, 5, 5 }, []));
        Assert.Equal(2, s.Sample(new float[] { float.NegativeInfinity, -9, -0f, 0f, -1 }, [])); // -0 == +0: the lower id

        var rng = new Random(1);
        var big = new Sampler(SamplerOptions.Greedy, LlamaVocab);
        for (int t = 0; t < 5; t++)
        {
            var logits = RandomLogits(rng, LlamaVocab, 3);
            int expected = Array.IndexOf(logits, logits.Max());
            logits[LlamaVocab - 1] = logits[expected]; // a tie with the last id
            Assert.Equal(expected, big.Sample(logits, []));
        }
    }

    [Fact]
    public void TemperatureZeroIgnoresTheRandomGeneratorAndTheTruncation()
    {
        var rng = new Random(2);
        var samplers = new ulong?[] { 1, 2, null }.Select(seed =>
            new Sampler(new SamplerOptions { Temperature = 0, TopP = 0.3f, TopK = 3, MinP = 0.5f, Seed = seed }, 300)).ToArray();
        for (int t = 0; t < 50; t++)
        {
            var logits = RandomLogits(rng, 300, 2);
            int expected = Array.IndexOf(logits, logits.Max());
            foreach (var s in samplers) Assert.Equal(expected, s.Sample((float[])logits.Clone(), []));
        }
    }

    [Fact]
    public void TopK1EqualsGreedy()
    {
        var rng = new Random(3);
        var greedy = new Sampler(SamplerOptions.Greedy, 1000);
        var topK1 = new Sampler(new SamplerOptions { Temperature = 1.3f, TopP = 1, TopK = 1, Seed = 9 }, 1000);
        for (int t = 0; t < 200; t++)
        {
            // Rounded to halves so the maximum is often shared: both must take the lowest id.
            var logits = RandomLogits(rng, 1000, 1.5).Select(x => MathF.Round(x * 2) / 2).ToArray();
            Assert.Equal(greedy.Sample((float[])logits.Clone(), []), topK1.Sample((float[])logits.Clone(), []));
        }
    }

    // ---------------------------------------------------------------- top-p (Meta's sample_top_p)

    [Theory]
    // Meta: mask = probs_sum - probs_sort > p. On [0.5, 0.3, 0.15, 0.05] the exclusive sums are 0, 0.5, 0.8, 0.95.
    // p = 0.8: in exact arithmetic 0.8 > 0.8 is false and the third token would stay, but in float32, as PyTorch computes
    // it, probs_sum = 0.95000005f and 0.95000005f - 0.15f = 0.80000007f > 0.8f: the third is masked, two stay.
    [InlineData(0.8f, 2)]
    // p = 0.5: 0.8f - 0.3f is exactly 0.5f and 0.5 > 0.5 is false, so the second token stays (its preceding mass equals p).
    [InlineData(0.5f, 2)]
    [InlineData(0.49f, 1)]
    [InlineData(0.81f, 3)]
    [InlineData(0.9f, 3)]
    // p = 0.95: 1f - 0.05f = 0.94999999f, which is 0.95f: not greater, so the fourth stays.
    [InlineData(0.95f, 4)]
    [InlineData(0.96f, 4)]
    [InlineData(1f, 4)]
    [InlineData(0.01f, 1)]
    public void TopPFollowsMetasMaskOnAHandMadeDistribution(float p, int kept)
    {
        Assert.Equal(kept, Sampler.TopPKeptCount([0.5f, 0.3f, 0.15f, 0.05f], p));
    }

    [Fact]
    public void TopPMaskIsComputedInFloat32AsPyTorchDoes()
    {
        // The two float facts the hand-made cases rest on.
        Assert.True((float)(0.5 + 0.3f + 0.15f) - 0.15f > 0.8f);
        Assert.Equal(0.5f, (float)(0.5 + 0.3f) - 0.3f);
    }

    [Theory]
    [InlineData(0.49f, new[] { 7 })]
    [InlineData(0.79f, new[] { 7, 2 })]
    [InlineData(0.81f, new[] { 7, 2, 9 })]
    [InlineData(0.97f, new[] { 7, 2, 9, 0 })]
    public void TopPKeepsTheMostLikelyPrefixWhereverTheTokensSit(float p, int[] expected)
    {
        // probs 0.5, 0.3, 0.15, 0.05 at ids 7, 2, 9, 0 of ten; the rest impossible.
        var probs = new double[10];
        probs[7] = 0.5; probs[2] = 0.3; probs[9] = 0.15; probs[0] = 0.05;
        var s = new Sampler(new SamplerOptions { Temperature = 1, TopP = p, Seed = 1 }, 10);
        var ids = Kept(s, LogitsOf(probs), [], out var kept);
        Assert.Equal(expected, ids);
        double mass = expected.Sum(i => probs[i]);
        for (int i = 0; i < ids.Length; i++) Assert.Equal(probs[ids[i]] / mass, kept[i], 1e-6);
    }

    /// <summary>
    /// The chain done the plain way: a full sort, Meta's mask applied to every sorted token independently (not stopping
    /// at the first), min-p, renormalization. The weights and their sum come from the sampler's own <c>Weight</c> and
    /// <c>SumInOrder</c>, in the sampler's order, so what is compared is the selection, not the rounding of exp.
    /// </summary>
    private static List<(int Id, double Prob)> ReferenceChain(float[] logits, SamplerOptions o)
    {
        int v = logits.Length;
        float max = logits.Max();
        bool topK = o.TopK > 0 && o.TopK < v;
        int[] candidates = topK
            ? Enumerable.Range(0, v).OrderByDescending(i => logits[i]).ThenBy(i => i).Take(o.TopK).ToArray()
            : Enumerable.Range(0, v).ToArray();
        var w = new float[v];
        foreach (int i in candidates) w[i] = Sampler.Weight(logits[i], max, o.Temperature);
        int[] sorted = candidates.OrderByDescending(i => w[i]).ThenBy(i => i).ToArray();
        double z = 0;
        if (topK) foreach (int i in sorted) z += w[i];
        else z = Sampler.SumInOrder(w);

        var keep = new HashSet<int>(sorted);
        if (o.TopP < 1)
        {
            double cum = 0;
            foreach (int i in sorted)
            {
                float prob = (float)(w[i] / z);
                cum += prob;
                if ((float)cum - prob > o.TopP) keep.Remove(i);
            }
        }
        keep.RemoveWhere(i => !(w[i] > 0 && w[i] >= o.MinP));
        double total = keep.Sum(i => (double)w[i]);
        return keep.OrderBy(i => i).Select(i => (i, w[i] / total)).ToList();
    }

    public static TheoryData<int, int> ReferenceCases()
    {
        var data = new TheoryData<int, int>();
        int[] sizes = [1, 2, 3, 17, 64, 65, 1000, 5000];
        for (int c = 0; c < 400; c++) data.Add(sizes[c % sizes.Length], c);
        for (int c = 0; c < 12; c++) data.Add(LlamaVocab, 1000 + c);
        return data;
    }

    [Theory]
    [MemberData(nameof(ReferenceCases))]
    public void ChainMatchesAFullSortReference(int vocab, int seed)
    {
        var rng = new Random(seed);
        float[] logits = (seed % 5) switch
        {
            0 => PeakedLogits(rng, vocab),
            1 => RandomLogits(rng, vocab, 0.3),                                                  // nearly flat
            2 => RandomLogits(rng, vocab, 2).Select(x => MathF.Round(x)).ToArray(),             // many ties
            3 => RandomLogits(rng, vocab, 8).Select(x => x < -8 ? float.NegativeInfinity : x).ToArray(), // masked tokens
            _ => Enumerable.Range(0, vocab).Select(_ => (float)(rng.NextDouble() * 10 - 5)).ToArray(), // uniform
        };
        if (logits.All(float.IsNegativeInfinity)) logits[0] = 0;
        float[] temperatures = [0.1f, 0.6f, 1f, 1.7f];
        float[] ps = [0.05f, 0.5f, 0.9f, 0.95f, 0.999f, 0.99999f, 1f];
        float[] minPs = [0f, 0f, 0.05f, 0.5f];
        int[] ks = [0, 0, 0, 1, 5, 40, vocab - 1, vocab];
        var o = new SamplerOptions
        {
            Temperature = temperatures[rng.Next(temperatures.Length)],
            TopP = ps[rng.Next(ps.Length)],
            MinP = minPs[rng.Next(minPs.Length)],
            TopK = Math.Max(0, ks[rng.Next(ks.Length)]),
            Seed = 1,
        };
        var expected = ReferenceChain(logits, o);

        var ids = Kept(new Sampler(o, vocab), logits, [], out var probs);
        var actual = ids.Zip(probs).OrderBy(x => x.First).ToList();
        Assert.Equal(expected.Select(x => x.Id), actual.Select(x => x.First));
        for (int i = 0; i < expected.Count; i++) Assert.Equal(expected[i].Prob, actual[i].Second, 1e-12);
    }

    [Fact]
    public void SelectSmallestPutsTheKSmallestFirst()
    {
        var rng = new Random(4);
        foreach (int n in new[] { 1, 2, 3, 7, 31, 32, 33, 255, 256, 257, 4097 })
        {
            var patterns = new List<ulong[]>
            {
                Enumerable.Range(0, n).Select(_ => (ulong)rng.NextInt64()).ToArray(),
                Enumerable.Range(0, n).Select(i => (ulong)i).ToArray(),                       // ascending
                Enumerable.Range(0, n).Select(i => (ulong)(n - i)).ToArray(),                 // descending
                Enumerable.Range(0, n).Select(i => (ulong)Math.Min(i, n - i)).ToArray(),      // organ pipe (repeats)
                Enumerable.Range(0, n).Select(i => Sampler.Key(1.5f, i)).ToArray(),           // one logit, ids decide
                Enumerable.Range(0, n).Select(_ => (ulong)rng.Next(3)).ToArray(),             // three values
            };
            foreach (var keys in patterns)
            {
                var sorted = keys.Order().ToArray();
                var ks = n <= 33 ? Enumerable.Range(1, n) : new[] { 1, 2, n / 3, n / 2, n - 1, n }.Concat(Enumerable.Range(0, 5).Select(_ => rng.Next(1, n + 1)));
                foreach (int k in ks)
                {
                    var a = (ulong[])keys.Clone();
                    Sampler.SelectSmallest(a, k);
                    Assert.Equal(sorted[..k], a[..k].Order().ToArray());
                    Assert.Equal(sorted, a.Order().ToArray()); // a permutation
                }
            }
        }
    }

    [Fact]
    public void KeysRankByValueDescendingThenIdAscending()
    {
        float[] values = [float.PositiveInfinity, 1e30f, 3f, 1f, 1e-45f, 0f, -1e-45f, -1f, -1e30f, float.NegativeInfinity];
        for (int a = 0; a < values.Length; a++)
        for (int b = 0; b < values.Length; b++)
        {
            Assert.Equal(a < b, Sampler.Key(values[a], 5) < Sampler.Key(values[b], 5));
            Assert.True(Sampler.Key(values[a], 4) < Sampler.Key(values[a], 5));
        }
        Assert.Equal(Sampler.Key(0f, 3), Sampler.Key(-0f, 3));
        Assert.Equal(123456, Sampler.IdOf(Sampler.Key(-2.5f, 123456)));
    }

    // ---------------------------------------------------------------- min-p

    [Theory]
    // weights relative to the most likely: 1, 0.6, 0.3, 0.1
    [InlineData(0.05f, new[] { 0, 1, 2, 3 })]
    [InlineData(0.25f, new[] { 0, 1, 2 })]
    [InlineData(0.5f, new[] { 0, 1 })]
    [InlineData(1f, new[] { 0 })]
    public void MinPDropsTokensBelowAFractionOfTheMostLikely(float minP, int[] expected)
    {
        double[] probs = [0.5, 0.3, 0.15, 0.05, 0];
        var logits = LogitsOf(probs);
        double mass = expected.Sum(i => probs[i]);
        // Over every id, after a top-k (sorted candidates), and after a top-p that keeps everything.
        foreach (var o in new[]
        {
            new SamplerOptions { Temperature = 1, TopP = 1, MinP = minP, Seed = 5 },
            new SamplerOptions { Temperature = 1, TopP = 1, TopK = 4, MinP = minP, Seed = 5 },
            new SamplerOptions { Temperature = 1, TopP = 0.999f, MinP = minP, Seed = 5 },
        })
        {
            var s = new Sampler(o, 5);
            var ids = Kept(s, logits, [], out var kept);
            Assert.Equal(expected, ids.Order());
            for (int i = 0; i < ids.Length; i++) Assert.Equal(probs[ids[i]] / mass, kept[i], 1e-6);
            for (int t = 0; t < 500; t++) Assert.Contains(s.Sample((float[])logits.Clone(), []), expected);
        }
    }

    // ---------------------------------------------------------------- penalties

    [Fact]
    public void RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogitsOncePerToken()
    {
        var s = new Sampler(SamplerOptions.Greedy with { RepeatPenalty = 2f }, 5);
        float[] logits = [2f, -2f, 1f, 0f, 3f];
        Assert.Equal(4, s.Sample(logits, [0, 1, 0, 3]));
        // id 0 twice in the history is still divided once (llama.cpp); 0 * 2 stays 0; ids 2 and 4 are untouched.
        Assert.Equal([1f, -4f, 1f, 0f, 3f], logits);

        // The penalty can move the argmax.
        var two = new Sampler(SamplerOptions.Greedy with { RepeatPenalty = 2f }, 2);
        Assert.Equal(1, two.Sample(new[] { 2f, 1.5f }, [0]));
        Assert.Equal(0, two.Sample(new[] { 2f, 1.5f }, [1]));
    }

    [Theory]
    [InlineData(3, new[] { 0f, 0f, -1.25f, -0.75f, 0f, 0f })]    // last three: 2, 3, 2
    [InlineData(-1, new[] { 0f, -1.25f, -1.25f, -0.75f, 0f, 0f })] // whole history
    [InlineData(100, new[] { 0f, -1.25f, -1.25f, -0.75f, 0f, 0f })] // longer than the history
    [InlineData(0, new[] { 0f, 0f, 0f, 0f, 0f, 0f })]
    [InlineData(1, new[] { 0f, 0f, -0.75f, 0f, 0f, 0f })]
    public void FrequencyAndPresencePenaltiesCountTheWindow(int window, float[] expected)
    {
        // OpenAI: logit -= count * frequency_penalty + (count > 0) * presence_penalty.
        var s = new Sampler(SamplerOptions.Greedy with { FrequencyPenalty = 0.5f, PresencePenalty = 0.25f, PenaltyWindow = window }, 6);
        var logits = new float[6];
        s.Sample(logits, [1, 1, 2, 3, 2]);
        Assert.Equal(expected, logits);

        // The counts do not leak into the next call.
        var again = new float[6];
        s.Sample(again, [4]);
        Assert.Equal(window == 0 ? new float[6] : [0f, 0f, 0f, 0f, -0.75f, 0f], again);
    }

    [Fact]
    public void PenaltiesCombineAsLlamaCppAppliesThem()
    {
        // Repetition first, then frequency and presence: 2 / 2 - (2 * 0.5 + 0.25) = -0.25; -1 * 2 - (1 * 0.5 + 0.25) = -2.75.
        var s = new Sampler(SamplerOptions.Greedy with { RepeatPenalty = 2f, FrequencyPenalty = 0.5f, PresencePenalty = 0.25f }, 3);
        var logits = new[] { 2f, -1f, 0.5f };
        Assert.Equal(2, s.Sample(logits, [0, 1, 0]));
        Assert.Equal([-0.25f, -2.75f, 0.5f], logits);

        // Negative penalties (OpenAI allows -2..2) encourage repetition.
        var encourage = new Sampler(SamplerOptions.Greedy with { FrequencyPenalty = -1f }, 3);
        Assert.Equal(1, encourage.Sample(new[] { 2f, 1.5f, 0f }, [1]));
    }

    // ---------------------------------------------------------------- the random generator and the draw

    [Fact]
    public void RandomGeneratorMatchesTheAuthorsReferenceCode()
    {
        // Printed by Vigna's splitmix64.c and xoshiro256starstar.c, compiled as published (state from splitmix64(seed)).
        ulong x = 0;
        Assert.Equal([0xE220A8397B1DCDAFUL, 0x6E789E6AA1B965F4UL, 0x06C45D188009454FUL, 0xF88BB8A8724C81ECUL],
            Enumerable.Range(0, 4).Select(_ => SamplerRandom.SplitMix64(ref x)).ToArray());

        var r0 = new SamplerRandom(0);
        Assert.Equal([0x99EC5F36CB75F2B4UL, 0xBF6E1F784956452AUL, 0x1A5F849D4933E6E0UL, 0x6AA594F1262D2D2CUL,
            0xBBA5AD4A1F842E59UL, 0xFFEF8375D9EBCACAUL], Enumerable.Range(0, 6).Select(_ => r0.NextUInt64()).ToArray());
        var r42 = new SamplerRandom(42);
        Assert.Equal([0x15780B2E0C2EC716UL, 0x6104D9866D113A7EUL, 0xAE17533239E499A1UL, 0xECB8AD4703B360A1UL,
            0xFDE6DC7FE2EC5E64UL, 0xC50DA53101795238UL], Enumerable.Range(0, 6).Select(_ => r42.NextUInt64()).ToArray());

        var d = new SamplerRandom(0);
        Assert.Equal((0x99EC5F36CB75F2B4UL >> 11) / 9007199254740992.0, d.NextDouble());
        for (int i = 0; i < 10000; i++) Assert.InRange(d.NextDouble(), 0.0, Math.BitDecrement(1.0));
    }

    [Fact]
    public void SeededRunsAreReproducibleAndSeedsDiffer()
    {
        var rng = new Random(6);
        var logits = RandomLogits(rng, 50, 0.7);
        int[] Draws(ulong seed, int n)
        {
            var s = new Sampler(new SamplerOptions { Temperature = 1, TopP = 1, Seed = seed }, 50);
            return Enumerable.Range(0, n).Select(_ => s.Sample((float[])logits.Clone(), [])).ToArray();
        }
        var a = Draws(42, 1000);
        Assert.Equal(a, Draws(42, 1000));
        Assert.True(a.Distinct().Count() > 30, "the draws should spread over the vocabulary");
        var b = Draws(43, 1000);
        Assert.True(a.Zip(b).Count(x => x.First != x.Second) > 800, "another seed should give another sequence");

        // Also through the histogram path of top-p over Llama's vocabulary, and top-k.
        var big = PeakedLogits(rng, LlamaVocab);
        foreach (var o in new[] { new SamplerOptions { Temperature = 1.5f, TopP = 0.95f, Seed = 7 }, new SamplerOptions { TopK = 40, TopP = 1, Seed = 7 } })
        {
            var s1 = new Sampler(o, LlamaVocab);
            var s2 = new Sampler(o, LlamaVocab);
            var d1 = Enumerable.Range(0, 30).Select(_ => s1.Sample((float[])big.Clone(), [])).ToArray();
            var d2 = Enumerable.Range(0, 30).Select(_ => s2.Sample((float[])big.Clone(), [])).ToArray();
            Assert.Equal(d1, d2);
            Assert.True(d1.Distinct().Count() > 1);
        }
    }

    [Fact]
    public void EachDrawIsTheInverseCdfOfOneSeededUniform()
    {
        // Sample takes one NextDouble per call and returns the first candidate, in draw order, whose running
        // probability exceeds it.
        var rng = new Random(7);
        var o = new SamplerOptions { Temperature = 0.8f, TopP = 0.9f, TopK = 50, Seed = 99 };
        var s = new Sampler(o, 500);
        var probe = new Sampler(o, 500);
        var uniform = new SamplerRandom(99);
        for (int t = 0; t < 300; t++)
        {
            var logits = RandomLogits(rng, 500, 2);
            var ids = Kept(probe, logits, [], out var probs);
            double u = uniform.NextDouble(), cum = 0;
            int expected = ids[^1];
            for (int i = 0; i < ids.Length; i++)
            {
                cum += probs[i];
                if (cum > u) { expected = ids[i]; break; }
            }
            Assert.Equal(expected, s.Sample(logits, []));
        }
    }

    private static double ChiSquare(int[] counts, double[] expectedProbs, int n) =>
        counts.Select((c, i) => (c - n * expectedProbs[i]) * (c - n * expectedProbs[i]) / (n * expectedProbs[i])).Sum();

    [Fact]
    public void DrawsFollowTheDistributionChiSquare()
    {
        double[] probs = [0.4, 0.25, 0.15, 0.1, 0.05, 0.03, 0.02];
        var logits = LogitsOf(probs);
        const int N = 100_000;

        // Plain softmax: 6 degrees of freedom, 22.46 is the 0.999 quantile.
        var counts = new int[7];
        var s = new Sampler(new SamplerOptions { Temperature = 1, TopP = 1, Seed = 2024 }, 7);
        for (int i = 0; i < N; i++) counts[s.Sample((float[])logits.Clone(), [])]++;
        Assert.InRange(ChiSquare(counts, probs, N), 0, 22.46);

        // Temperature 0.5 squares the probabilities: 0.618, 0.2415, 0.0869, ...; Meta's top-p 0.8 then keeps two (the mass
        // before the third, 0.860, exceeds 0.8), renormalized to 0.16/0.2225 and 0.0625/0.2225. 1 degree of freedom: 10.83.
        var tempered = new Sampler(new SamplerOptions { Temperature = 0.5f, TopP = 0.8f, Seed = 2025 }, 7);
        var two = new int[7];
        for (int i = 0; i < N; i++) two[tempered.Sample((float[])logits.Clone(), [])]++;
        Assert.Equal(N, two[0] + two[1]);
        Assert.InRange(ChiSquare(two[..2], [0.16 / 0.2225, 0.0625 / 0.2225], N), 0, 10.83);

        // Top-k 3: 0.4, 0.25, 0.15 renormalized. 2 degrees of freedom: 13.82.
        var topK = new Sampler(new SamplerOptions { Temperature = 1, TopP = 1, TopK = 3, Seed = 2026 }, 7);
        var three = new int[7];
        for (int i = 0; i < N; i++) three[topK.Sample((float[])logits.Clone(), [])]++;
        Assert.Equal(N, three[0] + three[1] + three[2]);
        Assert.InRange(ChiSquare(three[..3], [0.5, 0.3125, 0.1875], N), 0, 13.82);
    }

    [Fact]
    public void ChiSquareThroughTheHistogramPathOfTopP()
    {
        // Eight likely tokens scattered over a vocabulary of 16384 above a bulk that holds about 5e-5 of the mass; top-p
        // 0.99 over every id takes the histogram path and keeps exactly the eight.
        const int Vocab = 16384;
        var rng = new Random(8);
        var logits = RandomLogits(rng, Vocab, 1).Select(x => x - 20f).ToArray();
        int[] ids = [5, 7000, 16383, 1234, 9999, 42, 6400, 3];
        double[] probs = [0.3, 0.2, 0.15, 0.12, 0.1, 0.08, 0.03, 0.02];
        for (int i = 0; i < ids.Length; i++) logits[ids[i]] = (float)Math.Log(probs[i]);
        var o = new SamplerOptions { Temperature = 1, TopP = 0.99f, Seed = 11 };
        Assert.Equal(ids, Kept(new Sampler(o, Vocab), logits, [], out _));

        var s = new Sampler(o, Vocab);
        const int N = 5_000;
        var counts = new int[ids.Length];
        var scratch = new float[Vocab];
        for (int t = 0; t < N; t++)
        {
            logits.CopyTo(scratch, 0);
            counts[Array.IndexOf(ids, s.Sample(scratch, []))]++;
        }
        // 7 degrees of freedom: 24.32 is the 0.999 quantile.
        Assert.InRange(ChiSquare(counts, probs, N), 0, 24.32);
    }

    // ---------------------------------------------------------------- logprobs

    [Fact]
    public void LogprobsAreTheLogSoftmaxOfThePenalizedLogits()
    {
        var rng = new Random(9);
        int[] history = [3, 3, 7, 11];
        var o = new SamplerOptions
        {
            Temperature = 0.7f, TopP = 0.9f, RepeatPenalty = 1.3f, FrequencyPenalty = 0.2f, Logprobs = true,
            TopLogprobs = 20, Seed = 3,
        };
        var withLogprobs = new Sampler(o, 20);
        var plain = new Sampler(o, 20);
        for (int t = 0; t < 100; t++)
        {
            var logits = RandomLogits(rng, 20, 2);
            // The penalties by hand, then log-softmax in double.
            var penalized = (float[])logits.Clone();
            foreach (int id in history.Distinct())
            {
                int count = history.Count(h => h == id);
                float l = penalized[id];
                penalized[id] = (l <= 0 ? l * 1.3f : l / 1.3f) - (count * 0.2f);
            }
            double m = penalized.Max();
            double logZ = m + Math.Log(penalized.Sum(l => Math.Exp(l - m)));

            var scratch = (float[])logits.Clone();
            var r = withLogprobs.SampleWithLogprobs(scratch, history);
            Assert.Equal(penalized, scratch);
            Assert.Equal(plain.Sample((float[])logits.Clone(), history), r.Id); // the same chain and draw
            Assert.Equal(20, r.TopLogprobs.Length);
            Assert.Equal(Enumerable.Range(0, 20).OrderByDescending(i => penalized[i]).ThenBy(i => i), r.TopLogprobs.Select(x => x.Id));
            Assert.Equal(1.0, r.TopLogprobs.Sum(x => Math.Exp(x.Logprob)), 1e-5);
            foreach (var (id, logprob) in r.TopLogprobs) Assert.Equal(penalized[id] - logZ, logprob, 1e-5);
            Assert.Equal(r.TopLogprobs.Single(x => x.Id == r.Id).Logprob, r.Logprob);
        }
    }

    [Fact]
    public void LogprobsDoNotDependOnTemperatureOrTruncation()
    {
        var rng = new Random(10);
        var logits = PeakedLogits(rng, LlamaVocab);
        var results = new[]
        {
            new SamplerOptions { Temperature = 0.2f, TopLogprobs = 5, Seed = 1 },
            new SamplerOptions { Temperature = 1.5f, TopP = 1, TopK = 3, TopLogprobs = 5, Seed = 1 },
            SamplerOptions.Greedy with { TopLogprobs = 5 },
        }.Select(o => new Sampler(o, LlamaVocab).SampleWithLogprobs((float[])logits.Clone(), [])).ToArray();
        var top5 = Enumerable.Range(0, LlamaVocab).OrderByDescending(i => logits[i]).Take(5).ToArray();
        foreach (var r in results) Assert.Equal(top5, r.TopLogprobs.Select(x => x.Id));
        for (int i = 0; i < 5; i++)
        {
            Assert.Equal(results[0].TopLogprobs[i], results[1].TopLogprobs[i]);
            Assert.Equal(results[0].TopLogprobs[i], results[2].TopLogprobs[i]);
        }
        Assert.Equal(top5[0], results[2].Id);
        Assert.Equal(results[2].TopLogprobs[0].Logprob, results[2].Logprob);
        Assert.True(results[0].Logprob < 0);
    }

    [Fact]
    public void NoTopLogprobsGivesAnEmptyListAndStillTheChosenLogprob()
    {
        var logits = LogitsOf(0.5, 0.25, 0.25);
        var r = new Sampler(SamplerOptions.Greedy with { Logprobs = true }, 3).SampleWithLogprobs(logits, []);
        Assert.Equal(0, r.Id);
        Assert.Empty(r.TopLogprobs);
        Assert.Equal(Math.Log(0.5), r.Logprob, 1e-6);
    }

    // ---------------------------------------------------------------- options

    [Fact]
    public void DefaultsAreMetasAndEverythingElseIsOff()
    {
        var o = new SamplerOptions();
        Assert.Equal(0.6f, o.Temperature);
        Assert.Equal(0.9f, o.TopP);
        Assert.Equal(0, o.TopK);
        Assert.Equal(0f, o.MinP);
        Assert.Equal(1f, o.RepeatPenalty);
        Assert.Equal(0f, o.FrequencyPenalty);
        Assert.Equal(0f, o.PresencePenalty);
        Assert.Equal(64, o.PenaltyWindow);
        Assert.Null(o.Seed);
        Assert.Equal(0, o.TopLogprobs);
        Assert.False(o.Logprobs);
        Assert.Equal(0f, SamplerOptions.Greedy.Temperature);
    }

    public static TheoryData<SamplerOptions, string> BadOptions() => new()
    {
        { new() { Temperature = -0.1f }, "Temperature" },
        { new() { Temperature = float.NaN }, "Temperature" },
        { new() { Temperature = float.PositiveInfinity }, "Temperature" },
        { new() { TopP = 0f }, "TopP" },
        { new() { TopP = -0.5f }, "TopP" },
        { new() { TopP = 1.01f }, "TopP" },
        { new() { TopP = float.NaN }, "TopP" },
        { new() { MinP = -0.01f }, "MinP" },
        { new() { MinP = 1.01f }, "MinP" },
        { new() { MinP = float.NaN }, "MinP" },
        { new() { TopK = -1 }, "TopK" },
        { new() { RepeatPenalty = 0f }, "RepeatPenalty" },
        { new() { RepeatPenalty = -1f }, "RepeatPenalty" },
        { new() { RepeatPenalty = float.NaN }, "RepeatPenalty" },
        { new() { FrequencyPenalty = float.NaN }, "FrequencyPenalty" },
        { new() { FrequencyPenalty = float.NegativeInfinity }, "FrequencyPenalty" },
        { new() { PresencePenalty = float.NaN }, "PresencePenalty" },
        { new() { PenaltyWindow = -2 }, "PenaltyWindow" },
        { new() { TopLogprobs = -1 }, "TopLogprobs" },
        { new() { TopLogprobs = 21 }, "TopLogprobs" },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void ValidateNamesTheBadField(SamplerOptions options, string field)
    {
        Assert.Equal(field, Assert.Throws<ArgumentOutOfRangeException>(options.Validate).ParamName);
        Assert.Equal(field, Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(options, 10)).ParamName);
    }

    [Fact]
    public void ValidateAcceptsTheEdges()
    {
        foreach (var o in new[]
        {
            new SamplerOptions(), SamplerOptions.Greedy, new SamplerOptions { TopP = 1f, MinP = 1f, TopK = 1 },
            new SamplerOptions { MinP = 0f, TopP = float.Epsilon, PenaltyWindow = -1, TopLogprobs = 20 },
            new SamplerOptions { RepeatPenalty = 1e-3f, FrequencyPenalty = -2f, PresencePenalty = 2f, PenaltyWindow = 0 },
        })
        {
            o.Validate();
            Assert.Equal(o, new Sampler(o, 10).Options);
        }
        Assert.Equal("vocabSize", Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(new SamplerOptions(), 0)).ParamName);
    }

    // ---------------------------------------------------------------- bad input and edge cases

    [Fact]
    public void BadLogitsAndHistorySayWhatIsWrong()
    {
        var s = new Sampler(new SamplerOptions { RepeatPenalty = 1.5f, Seed = 1 }, 4);
        Assert.Contains("expected 4 logits", Assert.Throws<ArgumentException>(() => s.Sample(new float[3], [])).Message);
        Assert.Contains("logit 2 is NaN", Assert.Throws<ArgumentException>(() => s.Sample([0, 1, float.NaN, 2], [])).Message);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => s.Sample(new float[4], [1, 2, 9]));
        Assert.Equal("history", ex.ParamName);
        Assert.Contains("history token 2 is 9", ex.Message);
        Assert.Throws<InvalidOperationException>(() => s.Sample(Enumerable.Repeat(float.NegativeInfinity, 4).ToArray(), []));
        Assert.Throws<InvalidOperationException>(() => new Sampler(SamplerOptions.Greedy, 2).Sample([float.NegativeInfinity, float.NegativeInfinity], []));

        // A failed call leaves no counts behind: it had counted 1 and 2 before it met 9, yet afterwards only 1 is penalized.
        var sg = new Sampler(SamplerOptions.Greedy with { RepeatPenalty = 1.5f }, 4);
        Assert.Throws<ArgumentOutOfRangeException>(() => sg.Sample(new float[4], [1, 2, 9]));
        var after = new[] { 0f, 3f, 3f, 1f };
        sg.Sample(after, [1]);
        Assert.Equal([0f, 2f, 3f, 1f], after);
    }

    [Fact]
    public void InfiniteAndSingleTokenEdgesAreDefined()
    {
        // A +infinity logit (a forced token) is the only one that can be drawn, with log-probability 0.
        var s = new Sampler(new SamplerOptions { Temperature = 1, TopP = 0.9f, TopLogprobs = 2, Seed = 1 }, 5);
        for (int t = 0; t < 20; t++)
        {
            var r = s.SampleWithLogprobs([1f, float.PositiveInfinity, 3f, float.NegativeInfinity, 0f], []);
            Assert.Equal(1, r.Id);
            Assert.Equal(0f, r.Logprob);
            Assert.Equal(float.NegativeInfinity, r.TopLogprobs[1].Logprob);
        }
        // -infinity logits are never drawn.
        var masked = new Sampler(new SamplerOptions { Temperature = 2, TopP = 1, Seed = 2 }, 4);
        for (int t = 0; t < 200; t++)
            Assert.Contains(masked.Sample([float.NegativeInfinity, 0f, float.NegativeInfinity, 0f], []), new[] { 1, 3 });
        // One token.
        var one = new Sampler(new SamplerOptions { Seed = 3 }, 1);
        Assert.Equal(0, one.Sample([-3f], []));
        Assert.Equal(0, new Sampler(new SamplerOptions { TopK = 1 }, 1).Sample([7f], []));
    }

    // ---------------------------------------------------------------- exp and its vector twin

    [Fact]
    public void ExpIsAccurateOnTheRangeItServes()
    {
        var rng = new Random(12);
        for (int i = 0; i < 100_000; i++)
        {
            float x = (float)(-86 * rng.NextDouble());
            double exact = Math.Exp(x);
            Assert.InRange(Math.Abs(Llama3.Kernels.Simd.Activations.ExpScalar(x) - exact) / exact, 0, 3e-7);
        }
        Assert.Equal(1f, Llama3.Kernels.Simd.Activations.ExpScalar(0f));
        Assert.Equal(1f, Llama3.Kernels.Simd.Activations.ExpScalar(-0f));
        Assert.Equal(0f, Llama3.Kernels.Simd.Activations.ExpScalar(-86f));
        Assert.Equal(0f, Llama3.Kernels.Simd.Activations.ExpScalar(float.NegativeInfinity));
        Assert.True(Llama3.Kernels.Simd.Activations.ExpScalar(-85.99f) > 0);
    }

    [Fact]
    public void VectorWeightsEqualTheScalarTwinBitForBit()
    {
        var rng = new Random(13);
        foreach (int n in new[] { 1, 7, 31, 32, 33, 255, 256, 257, 4097 })
        foreach (int offset in new[] { 0, 1, 3 })
        {
            var logits = RandomLogits(rng, n + offset, 20);
            for (int i = 0; i < logits.Length; i += 5) logits[i] = float.NegativeInfinity;
            float max = logits.Max();
            foreach (float t in new[] { 0.05f, 0.6f, 1f, 3f })
            {
                var w = new float[n];
                Sampler.Weights(logits.AsSpan(offset), max, t, w);
                for (int i = 0; i < n; i++)
                    Assert.Equal(BitConverter.SingleToInt32Bits(Sampler.Weight(logits[offset + i], max, t)), BitConverter.SingleToInt32Bits(w[i]));
            }
        }
    }

    // ---------------------------------------------------------------- allocation

    [Fact]
    public void SampleAllocatesNothingAfterWarmUp()
    {
        var rng = new Random(14);
        var peaked = PeakedLogits(rng, LlamaVocab);
        var flat = RandomLogits(rng, LlamaVocab, 0.3);
        var history = Enumerable.Range(0, 500).Select(_ => rng.Next(LlamaVocab)).ToArray();
        var scratch = new float[LlamaVocab];
        foreach (var o in new[]
        {
            new SamplerOptions { Seed = 1 },
            SamplerOptions.Greedy,
            new SamplerOptions { TopK = 40, MinP = 0.05f, Seed = 1 },
            new SamplerOptions { TopP = 1, MinP = 0.1f, Seed = 1 },
            new SamplerOptions { Temperature = 1, TopP = 0.95f, RepeatPenalty = 1.1f, FrequencyPenalty = 0.1f, PresencePenalty = 0.1f, PenaltyWindow = -1 },
        })
        foreach (var source in new[] { peaked, flat })
        {
            var s = new Sampler(o, LlamaVocab);
            for (int i = 0; i < 5; i++)
            {
                source.CopyTo(scratch, 0);
                s.Sample(scratch, history);
            }
            // Each call measured alone: an allocation of ours shows in every call, while the runtime's own one-off work on
            // this thread (tiered compilation reaching a method's call count, first use of a generic) shows in one.
            var bytes = new long[20];
            for (int i = 0; i < bytes.Length; i++)
            {
                source.CopyTo(scratch, 0);
                long before = GC.GetAllocatedBytesForCurrentThread();
                s.Sample(scratch, history);
                bytes[i] = GC.GetAllocatedBytesForCurrentThread() - before;
            }
            Assert.True(bytes.Count(b => b == 0) >= bytes.Length - 2, $"{o}: bytes allocated per call {string.Join(", ", bytes)}");
        }
    }
}
