namespace Llama3.Generation;

/// <summary>
/// The sampler's random generator: xoshiro256** 1.0 (Blackman and Vigna, <c>xoshiro256starstar.c</c> at
/// https://prng.di.unimi.it/), its 256-bit state filled from a 64-bit seed by four outputs of splitmix64
/// (<c>splitmix64.c</c>, same site) as the authors advise. Our own code, not <see cref="Random"/>, so a seed names
/// the same sequence on every machine and every .NET version.
/// </summary>
internal struct SamplerRandom
{
    private ulong _s0, _s1, _s2, _s3;

    /// <summary>Seeds the state with splitmix64(<paramref name="seed"/>); its outputs are never all zero.</summary>
    public SamplerRandom(ulong seed)
    {
        ulong x = seed;
        _s0 = SplitMix64(ref x);
        _s1 = SplitMix64(ref x);
        _s2 = SplitMix64(ref x);
        _s3 = SplitMix64(ref x);
    }

    /// <summary>One step of splitmix64 (Steele, Lea and Flood; Vigna's <c>splitmix64.c</c>).</summary>
    internal static ulong SplitMix64(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>The next 64 bits, as <c>next()</c> in <c>xoshiro256starstar.c</c>.</summary>
    public ulong NextUInt64()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>
    /// A uniform double in [0, 1): the top 53 bits times 2^-53, the conversion the authors recommend
    /// ("Generating uniform doubles in the unit interval", https://prng.di.unimi.it/).
    /// </summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));
}
