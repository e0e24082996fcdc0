using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Llama3.Kernels.Simd;

/// <summary>
/// Grouped-query attention for one token and one KV head: the <c>group</c> query heads that share the KV head read each
/// cached key and value once (Meta's <c>repeat_kv</c> without the copy). Keys and values are rows of
/// <c>kvStride</c> floats in the cache, this head's slice starting at <c>kvOffset</c>.
/// </summary>
public static partial class AttentionKernel
{
    /// <summary>
    /// <c>scores[g * scoresStride + j] = dot(q[g], key[j]) / scale</c> for the query heads g &lt; group and positions
    /// j &lt; positions (Meta: <c>xq @ keys.transpose / math.sqrt(head_dim)</c>).
    /// </summary>
    public static void Scores(ReadOnlySpan<float> q, int group, int hd, ReadOnlySpan<float> keys, int kvStride, int kvOffset,
        int positions, float scale, Span<float> scores, int scoresStride)
    {
        Check(q, group, hd, keys.Length, kvStride, kvOffset, positions, scores, scoresStride);
        if (!Vector256.IsHardwareAccelerated || hd % 8 != 0)
        {
            ScoresScalar(q, group, hd, keys, kvStride, kvOffset, positions, scale, scores, scoresStride);
            return;
        }
        ref float qr = ref MemoryMarshal.GetReference(q);
        ref float kr = ref MemoryMarshal.GetReference(keys);
        ref float sr = ref MemoryMarshal.GetReference(scores);
        if (Wide(hd))
        {
            Scores512(ref qr, group, hd, ref Unsafe.Add(ref kr, kvOffset), kvStride, positions, scale, ref sr, scoresStride);
            return;
        }
        for (int j = 0; j < positions; j++)
        {
            ref float k = ref Unsafe.Add(ref kr, j * kvStride + kvOffset);
            for (int g = 0; g < group; g++)
            {
                ref float qg = ref Unsafe.Add(ref qr, g * hd);
                var acc0 = Vector256<float>.Zero;
                var acc1 = Vector256<float>.Zero;
                int i = 0;
                for (; i + 16 <= hd; i += 16)
                {
                    acc0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref qg, (nuint)i), Vector256.LoadUnsafe(ref k, (nuint)i), acc0);
                    acc1 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref qg, (nuint)(i + 8)), Vector256.LoadUnsafe(ref k, (nuint)(i + 8)), acc1);
                }
                if (i < hd) acc0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref qg, (nuint)i), Vector256.LoadUnsafe(ref k, (nuint)i), acc0);
                Unsafe.Add(ref sr, g * scoresStride + j) = Vector256.Sum(acc0 + acc1) / scale;
            }
        }
    }

    /// <summary>The scalar twin of <see cref="Scores(ReadOnlySpan{float}, int, int, ReadOnlySpan{float}, int, int, int, float, Span{float}, int)"/>.</summary>
    public static void ScoresScalar(ReadOnlySpan<float> q, int group, int hd, ReadOnlySpan<float> keys, int kvStride, int kvOffset,
        int positions, float scale, Span<float> scores, int scoresStride) =>
        ScoresScalar<float, AsFloat>(q, group, hd, keys, kvStride, kvOffset, positions, scale, scores, scoresStride);

    /// <summary>A cache value as a float: itself, or a half widened (<see cref="AttentionKernel"/>'s scalar twins take either).</summary>
    private interface ICacheValue<T>
    {
        static abstract float Float(T value);
    }

    private struct AsFloat : ICacheValue<float>
    {
        public static float Float(float value) => value;
    }

    private struct FromHalf : ICacheValue<Half>
    {
        public static float Float(Half value) => Quant.Float16.HalfToSingle(BitConverter.HalfToUInt16Bits(value));
    }

    private static void ScoresScalar<T, TValue>(ReadOnlySpan<float> q, int group, int hd, ReadOnlySpan<T> keys, int kvStride, int kvOffset,
        int positions, float scale, Span<float> scores, int scoresStride) where TValue : ICacheValue<T>
    {
        Check(q, group, hd, keys.Length, kvStride, kvOffset, positions, scores, scoresStride);
        for (int j = 0; j < positions; j++)
            for (int g = 0; g < group; g++)
            {
                float sum = 0;
                for (int i = 0; i < hd; i++) sum += q[g * hd + i] * TValue.Float(keys[j * kvStride + kvOffset + i]);
                scores[g * scoresStride + j] = sum / scale;
            }
    }

    /// <summary>
    /// <c>output[g] = Σ_j scores[g * scoresStride + j] · value[j]</c> for the query heads g &lt; group (Meta:
    /// <c>scores @ values</c>); <paramref name="output"/> holds <c>group × hd</c> floats and is overwritten.
    /// </summary>
    public static void WeightedSum(ReadOnlySpan<float> scores, int scoresStride, int group, ReadOnlySpan<float> values, int kvStride,
        int kvOffset, int positions, int hd, Span<float> output)
    {
        Check(output, group, hd, values.Length, kvStride, kvOffset, positions, scores, scoresStride);
        if (!Vector256.IsHardwareAccelerated || hd % 8 != 0 || hd > 256)
        {
            WeightedSumScalar(scores, scoresStride, group, values, kvStride, kvOffset, positions, hd, output);
            return;
        }
        WeightedSumVector(scores, scoresStride, group, values, kvStride, kvOffset, positions, hd, output, accumulate: false);
    }

    /// <summary>
    /// The vector paths of <see cref="WeightedSum(ReadOnlySpan{float}, int, int, ReadOnlySpan{float}, int, int, int, int, Span{float})"/>; with <paramref name="accumulate"/> each output starts from what
    /// <paramref name="output"/> holds instead of zero, so positions taken in blocks give the bits of one call.
    /// </summary>
    private static void WeightedSumVector(ReadOnlySpan<float> scores, int scoresStride, int group, ReadOnlySpan<float> values, int kvStride,
        int kvOffset, int positions, int hd, Span<float> output, bool accumulate)
    {
        ref float vr = ref MemoryMarshal.GetReference(values);
        ref float sr = ref MemoryMarshal.GetReference(scores);
        ref float or = ref MemoryMarshal.GetReference(output);
        if (Wide(hd))
        {
            WeightedSum512(ref sr, scoresStride, group, ref Unsafe.Add(ref vr, kvOffset), kvStride, positions, hd, ref or, accumulate);
            return;
        }
        Span<Vector256<float>> acc = stackalloc Vector256<float>[32];
        int chunks = hd / 8;
        for (int g = 0; g < group; g++)
        {
            for (int c = 0; c < chunks; c++) acc[c] = accumulate ? Vector256.LoadUnsafe(ref or, (nuint)(g * hd + c * 8)) : default;
            ref float s = ref Unsafe.Add(ref sr, g * scoresStride);
            for (int j = 0; j < positions; j++)
            {
                var w = Vector256.Create(Unsafe.Add(ref s, j));
                ref float v = ref Unsafe.Add(ref vr, j * kvStride + kvOffset);
                for (int c = 0; c < chunks; c++)
                    acc[c] = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref v, (nuint)(c * 8)), w, acc[c]);
            }
            for (int c = 0; c < chunks; c++) acc[c].StoreUnsafe(ref or, (nuint)(g * hd + c * 8));
        }
    }

    /// <summary>The scalar twin of <see cref="WeightedSum(ReadOnlySpan{float}, int, int, ReadOnlySpan{float}, int, int, int, int, Span{float})"/>.</summary>
    public static void WeightedSumScalar(ReadOnlySpan<float> scores, int scoresStride, int group, ReadOnlySpan<float> values, int kvStride,
        int kvOffset, int positions, int hd, Span<float> output) =>
        WeightedSumScalar<float, AsFloat>(scores, scoresStride, group, values, kvStride, kvOffset, positions, hd, output);

    private static void WeightedSumScalar<T, TValue>(ReadOnlySpan<float> scores, int scoresStride, int group, ReadOnlySpan<T> values, int kvStride,
        int kvOffset, int positions, int hd, Span<float> output) where TValue : ICacheValue<T>
    {
        Check(output, group, hd, values.Length, kvStride, kvOffset, positions, scores, scoresStride);
        for (int g = 0; g < group; g++)
            for (int i = 0; i < hd; i++)
            {
                float sum = 0;
                for (int j = 0; j < positions; j++) sum += scores[g * scoresStride + j] * TValue.Float(values[j * kvStride + kvOffset + i]);
                output[g * hd + i] = sum;
            }
    }

    // The AVX-512 paths, for the head sizes of Llama 3 (64: 3.2 1B; 128: 3.2 3B, 3.1 8B and 70B).
    private static bool Wide(int hd) => Vector512.IsHardwareAccelerated && Avx512F.IsSupported && hd is 64 or 128;

    // Four positions at a time: each query chunk is loaded once for four keys, and the four dot products are reduced
    // together (three horizontal adds for four sums instead of a full reduction per score).
    private static void Scores512(ref float q, int group, int hd, ref float k, int kvStride, int positions, float scale, ref float s, int scoresStride)
    {
        var vscale = Vector128.Create(scale);
        int j = 0;
        for (; j + 4 <= positions; j += 4)
        {
            ref float k0 = ref Unsafe.Add(ref k, j * kvStride);
            ref float k1 = ref Unsafe.Add(ref k0, kvStride);
            ref float k2 = ref Unsafe.Add(ref k1, kvStride);
            ref float k3 = ref Unsafe.Add(ref k2, kvStride);
            if (j + 20 <= positions) Prefetch(ref Unsafe.Add(ref k0, 16 * kvStride), kvStride, 4, hd);
            int g = 0;
            for (; g + 4 <= group; g += 4)
                Scores4x4(ref Unsafe.Add(ref q, g * hd), hd, ref k0, ref k1, ref k2, ref k3, vscale, ref Unsafe.Add(ref s, g * scoresStride + j), scoresStride);
            for (; g < group; g++)
            {
                ref float qg = ref Unsafe.Add(ref q, g * hd);
                Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (int c = 0; c < hd; c += 16)
                {
                    var qv = Vector512.LoadUnsafe(ref qg, (nuint)c);
                    a0 = Vector512.FusedMultiplyAdd(qv, Vector512.LoadUnsafe(ref k0, (nuint)c), a0);
                    a1 = Vector512.FusedMultiplyAdd(qv, Vector512.LoadUnsafe(ref k1, (nuint)c), a1);
                    a2 = Vector512.FusedMultiplyAdd(qv, Vector512.LoadUnsafe(ref k2, (nuint)c), a2);
                    a3 = Vector512.FusedMultiplyAdd(qv, Vector512.LoadUnsafe(ref k3, (nuint)c), a3);
                }
                (Sum4(a0, a1, a2, a3) / vscale).StoreUnsafe(ref Unsafe.Add(ref s, g * scoresStride + j));
            }
        }
        for (; j < positions; j++)
        {
            ref float kj = ref Unsafe.Add(ref k, j * kvStride);
            for (int g = 0; g < group; g++)
            {
                ref float qg = ref Unsafe.Add(ref q, g * hd);
                Vector512<float> a = default;
                for (int c = 0; c < hd; c += 16)
                    a = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref qg, (nuint)c), Vector512.LoadUnsafe(ref kj, (nuint)c), a);
                Unsafe.Add(ref s, g * scoresStride + j) = Vector512.Sum(a) / scale;
            }
        }
    }

    // Four query heads against four keys: the 16 dot products in flight together, each key chunk loaded once for the
    // four heads (one head at a time left each head's four chains of hd / 16 dependent multiply-adds to run one after
    // another: 2.7 ns a score against 1.3, head size 64, one core, measured side by side). Each score is the same chain as
    // one head's.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scores4x4(ref float q0, int hd, ref float k0, ref float k1, ref float k2, ref float k3, Vector128<float> vscale,
        ref float s, int scoresStride)
    {
        ref float q1 = ref Unsafe.Add(ref q0, hd);
        ref float q2 = ref Unsafe.Add(ref q1, hd);
        ref float q3 = ref Unsafe.Add(ref q2, hd);
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
        for (int c = 0; c < hd; c += 16)
        {
            var x0 = Vector512.LoadUnsafe(ref k0, (nuint)c);
            var x1 = Vector512.LoadUnsafe(ref k1, (nuint)c);
            var x2 = Vector512.LoadUnsafe(ref k2, (nuint)c);
            var x3 = Vector512.LoadUnsafe(ref k3, (nuint)c);
            var qv = Vector512.LoadUnsafe(ref q0, (nuint)c);
            a00 = Vector512.FusedMultiplyAdd(qv, x0, a00); a01 = Vector512.FusedMultiplyAdd(qv, x1, a01);
            a02 = Vector512.FusedMultiplyAdd(qv, x2, a02); a03 = Vector512.FusedMultiplyAdd(qv, x3, a03);
            qv = Vector512.LoadUnsafe(ref q1, (nuint)c);
            a10 = Vector512.FusedMultiplyAdd(qv, x0, a10); a11 = Vector512.FusedMultiplyAdd(qv, x1, a11);
            a12 = Vector512.FusedMultiplyAdd(qv, x2, a12); a13 = Vector512.FusedMultiplyAdd(qv, x3, a13);
            qv = Vector512.LoadUnsafe(ref q2, (nuint)c);
            a20 = Vector512.FusedMultiplyAdd(qv, x0, a20); a21 = Vector512.FusedMultiplyAdd(qv, x1, a21);
            a22 = Vector512.FusedMultiplyAdd(qv, x2, a22); a23 = Vector512.FusedMultiplyAdd(qv, x3, a23);
            qv = Vector512.LoadUnsafe(ref q3, (nuint)c);
            a30 = Vector512.FusedMultiplyAdd(qv, x0, a30); a31 = Vector512.FusedMultiplyAdd(qv, x1, a31);
            a32 = Vector512.FusedMultiplyAdd(qv, x2, a32); a33 = Vector512.FusedMultiplyAdd(qv, x3, a33);
        }
        (Sum4(a00, a01, a02, a03) / vscale).StoreUnsafe(ref s);
        (Sum4(a10, a11, a12, a13) / vscale).StoreUnsafe(ref Unsafe.Add(ref s, scoresStride));
        (Sum4(a20, a21, a22, a23) / vscale).StoreUnsafe(ref Unsafe.Add(ref s, 2 * scoresStride));
        (Sum4(a30, a31, a32, a33) / vscale).StoreUnsafe(ref Unsafe.Add(ref s, 3 * scoresStride));
    }

    // This head's cache rows 16 positions ahead. With the heads interleaved (hd floats out of every kvStride) it made
    // scores 20% faster at 4,096 positions; with each head's rows contiguous (the model's cache now) it still does:
    // 4.8-5.8 against 8.9-9.4 ms for a token's scores over 128 heads of 4,096 positions from memory, one core.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Prefetch(ref float row, int kvStride, int rows, int hd)
    {
        for (int r = 0; r < rows; r++)
        {
            byte* p = (byte*)Unsafe.AsPointer(ref Unsafe.Add(ref row, r * kvStride));
            for (int b = 0; b < hd * sizeof(float); b += 64) Sse.Prefetch0(p + b);
        }
    }

    // [Σa0, Σa1, Σa2, Σa3].
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Sum4(Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3)
    {
        Vector256<float> r0 = a0.GetLower() + a0.GetUpper(), r1 = a1.GetLower() + a1.GetUpper();
        Vector256<float> r2 = a2.GetLower() + a2.GetUpper(), r3 = a3.GetLower() + a3.GetUpper();
        Vector256<float> h = Avx.HorizontalAdd(Avx.HorizontalAdd(r0, r1), Avx.HorizontalAdd(r2, r3));
        return h.GetLower() + h.GetUpper();
    }

    // Position by position, each value row loaded once for several query heads, whose accumulators stay in registers
    // (head size 64: four heads at a time; 128: two).
    private static void WeightedSum512(ref float s, int scoresStride, int group, ref float v, int kvStride, int positions, int hd, ref float o, bool accumulate)
    {
        int g = 0;
        if (hd == 64)
        {
            for (; g + 4 <= group; g += 4)
                WeightedSum64x4(ref Unsafe.Add(ref s, g * scoresStride), scoresStride, ref v, kvStride, positions, ref Unsafe.Add(ref o, g * hd), accumulate);
        }
        else
        {
            for (; g + 2 <= group; g += 2)
                WeightedSum128x2(ref Unsafe.Add(ref s, g * scoresStride), scoresStride, ref v, kvStride, positions, ref Unsafe.Add(ref o, g * hd), accumulate);
        }
        for (; g < group; g++)
        {
            ref float sg = ref Unsafe.Add(ref s, g * scoresStride);
            ref float og = ref Unsafe.Add(ref o, g * hd);
            for (int c = 0; c < hd; c += 64)
            {
                Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
                if (accumulate)
                {
                    a0 = Vector512.LoadUnsafe(ref og, (nuint)c); a1 = Vector512.LoadUnsafe(ref og, (nuint)(c + 16));
                    a2 = Vector512.LoadUnsafe(ref og, (nuint)(c + 32)); a3 = Vector512.LoadUnsafe(ref og, (nuint)(c + 48));
                }
                for (int j = 0; j < positions; j++)
                {
                    var w = Vector512.Create(Unsafe.Add(ref sg, j));
                    ref float vj = ref Unsafe.Add(ref v, j * kvStride + c);
                    a0 = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref vj, 0), w, a0);
                    a1 = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref vj, 16), w, a1);
                    a2 = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref vj, 32), w, a2);
                    a3 = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref vj, 48), w, a3);
                }
                a0.StoreUnsafe(ref og, (nuint)c);
                a1.StoreUnsafe(ref og, (nuint)(c + 16));
                a2.StoreUnsafe(ref og, (nuint)(c + 32));
                a3.StoreUnsafe(ref og, (nuint)(c + 48));
            }
        }
    }

    private static void WeightedSum64x4(ref float s, int scoresStride, ref float v, int kvStride, int positions, ref float o, bool accumulate)
    {
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
        if (accumulate)
        {
            a00 = Load(ref o, 0); a01 = Load(ref o, 16); a02 = Load(ref o, 32); a03 = Load(ref o, 48);
            a10 = Load(ref o, 64); a11 = Load(ref o, 80); a12 = Load(ref o, 96); a13 = Load(ref o, 112);
            a20 = Load(ref o, 128); a21 = Load(ref o, 144); a22 = Load(ref o, 160); a23 = Load(ref o, 176);
            a30 = Load(ref o, 192); a31 = Load(ref o, 208); a32 = Load(ref o, 224); a33 = Load(ref o, 240);
        }
        ref float s1 = ref Unsafe.Add(ref s, scoresStride);
        ref float s2 = ref Unsafe.Add(ref s1, scoresStride);
        ref float s3 = ref Unsafe.Add(ref s2, scoresStride);
        for (int j = 0; j < positions; j++)
        {
            ref float vj = ref Unsafe.Add(ref v, j * kvStride);
            var v0 = Vector512.LoadUnsafe(ref vj, 0);
            var v1 = Vector512.LoadUnsafe(ref vj, 16);
            var v2 = Vector512.LoadUnsafe(ref vj, 32);
            var v3 = Vector512.LoadUnsafe(ref vj, 48);
            var w = Vector512.Create(Unsafe.Add(ref s, j));
            a00 = Vector512.FusedMultiplyAdd(v0, w, a00); a01 = Vector512.FusedMultiplyAdd(v1, w, a01);
            a02 = Vector512.FusedMultiplyAdd(v2, w, a02); a03 = Vector512.FusedMultiplyAdd(v3, w, a03);
            w = Vector512.Create(Unsafe.Add(ref s1, j));
            a10 = Vector512.FusedMultiplyAdd(v0, w, a10); a11 = Vector512.FusedMultiplyAdd(v1, w, a11);
            a12 = Vector512.FusedMultiplyAdd(v2, w, a12); a13 = Vector512.FusedMultiplyAdd(v3, w, a13);
            w = Vector512.Create(Unsafe.Add(ref s2, j));
            a20 = Vector512.FusedMultiplyAdd(v0, w, a20); a21 = Vector512.FusedMultiplyAdd(v1, w, a21);
            a22 = Vector512.FusedMultiplyAdd(v2, w, a22); a23 = Vector512.FusedMultiplyAdd(v3, w, a23);
            w = Vector512.Create(Unsafe.Add(ref s3, j));
            a30 = Vector512.FusedMultiplyAdd(v0, w, a30); a31 = Vector512.FusedMultiplyAdd(v1, w, a31);
            a32 = Vector512.FusedMultiplyAdd(v2, w, a32); a33 = Vector512.FusedMultiplyAdd(v3, w, a33);
        }
        a00.StoreUnsafe(ref o, 0); a01.StoreUnsafe(ref o, 16); a02.StoreUnsafe(ref o, 32); a03.StoreUnsafe(ref o, 48);
        a10.StoreUnsafe(ref o, 64); a11.StoreUnsafe(ref o, 80); a12.StoreUnsafe(ref o, 96); a13.StoreUnsafe(ref o, 112);
        a20.StoreUnsafe(ref o, 128); a21.StoreUnsafe(ref o, 144); a22.StoreUnsafe(ref o, 160); a23.StoreUnsafe(ref o, 176);
        a30.StoreUnsafe(ref o, 192); a31.StoreUnsafe(ref o, 208); a32.StoreUnsafe(ref o, 224); a33.StoreUnsafe(ref o, 240);
    }

    private static void WeightedSum128x2(ref float s, int scoresStride, ref float v, int kvStride, int positions, ref float o, bool accumulate)
    {
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a04 = default, a05 = default, a06 = default, a07 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default, a14 = default, a15 = default, a16 = default, a17 = default;
        if (accumulate)
        {
            a00 = Load(ref o, 0); a01 = Load(ref o, 16); a02 = Load(ref o, 32); a03 = Load(ref o, 48);
            a04 = Load(ref o, 64); a05 = Load(ref o, 80); a06 = Load(ref o, 96); a07 = Load(ref o, 112);
            a10 = Load(ref o, 128); a11 = Load(ref o, 144); a12 = Load(ref o, 160); a13 = Load(ref o, 176);
            a14 = Load(ref o, 192); a15 = Load(ref o, 208); a16 = Load(ref o, 224); a17 = Load(ref o, 240);
        }
        ref float s1 = ref Unsafe.Add(ref s, scoresStride);
        for (int j = 0; j < positions; j++)
        {
            ref float vj = ref Unsafe.Add(ref v, j * kvStride);
            var w0 = Vector512.Create(Unsafe.Add(ref s, j));
            var w1 = Vector512.Create(Unsafe.Add(ref s1, j));
            var x = Vector512.LoadUnsafe(ref vj, 0); a00 = Vector512.FusedMultiplyAdd(x, w0, a00); a10 = Vector512.FusedMultiplyAdd(x, w1, a10);
            x = Vector512.LoadUnsafe(ref vj, 16); a01 = Vector512.FusedMultiplyAdd(x, w0, a01); a11 = Vector512.FusedMultiplyAdd(x, w1, a11);
            x = Vector512.LoadUnsafe(ref vj, 32); a02 = Vector512.FusedMultiplyAdd(x, w0, a02); a12 = Vector512.FusedMultiplyAdd(x, w1, a12);
            x = Vector512.LoadUnsafe(ref vj, 48); a03 = Vector512.FusedMultiplyAdd(x, w0, a03); a13 = Vector512.FusedMultiplyAdd(x, w1, a13);
            x = Vector512.LoadUnsafe(ref vj, 64); a04 = Vector512.FusedMultiplyAdd(x, w0, a04); a14 = Vector512.FusedMultiplyAdd(x, w1, a14);
            x = Vector512.LoadUnsafe(ref vj, 80); a05 = Vector512.FusedMultiplyAdd(x, w0, a05); a15 = Vector512.FusedMultiplyAdd(x, w1, a15);
            x = Vector512.LoadUnsafe(ref vj, 96); a06 = Vector512.FusedMultiplyAdd(x, w0, a06); a16 = Vector512.FusedMultiplyAdd(x, w1, a16);
            x = Vector512.LoadUnsafe(ref vj, 112); a07 = Vector512.FusedMultiplyAdd(x, w0, a07); a17 = Vector512.FusedMultiplyAdd(x, w1, a17);
        }
        a00.StoreUnsafe(ref o, 0); a01.StoreUnsafe(ref o, 16); a02.StoreUnsafe(ref o, 32); a03.StoreUnsafe(ref o, 48);
        a04.StoreUnsafe(ref o, 64); a05.StoreUnsafe(ref o, 80); a06.StoreUnsafe(ref o, 96); a07.StoreUnsafe(ref o, 112);
        a10.StoreUnsafe(ref o, 128); a11.StoreUnsafe(ref o, 144); a12.StoreUnsafe(ref o, 160); a13.StoreUnsafe(ref o, 176);
        a14.StoreUnsafe(ref o, 192); a15.StoreUnsafe(ref o, 208); a16.StoreUnsafe(ref o, 224); a17.StoreUnsafe(ref o, 240);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Load(ref float o, int at) => Vector512.LoadUnsafe(ref o, (nuint)at);

    private static void Check(ReadOnlySpan<float> perHead, int group, int hd, int cacheLength, int kvStride, int kvOffset,
        int positions, ReadOnlySpan<float> scores, int scoresStride)
    {
        if (group <= 0 || hd <= 0 || positions <= 0 || kvOffset < 0 || kvOffset + hd > kvStride || scoresStride < positions)
            throw new ArgumentException("inconsistent attention shapes");
        if (perHead.Length < group * hd) throw new ArgumentException("the query/output span is shorter than group × head_dim");
        if (cacheLength < (long)(positions - 1) * kvStride + kvOffset + hd) throw new ArgumentException("the cache span is shorter than the positions");
        if (scores.Length < (long)(group - 1) * scoresStride + positions) throw new ArgumentException("the scores span is too short");
    }
}
