using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Llama3.Kernels.Simd.QuantDotHelpers;

namespace Llama3.Kernels.Simd;

// The AVX2 multi-row kernels: each follows its single-row AVX2 kernel step for step per row (the same lanes, the same
// float operations in the same order), the weight decoding hoisted out of the rows.
public static unsafe partial class QuantDot
{
    // ---- Q4_0: Q4_0Avx2's two accumulators (even and odd blocks) per row. ----

    [MethodImpl(MethodImplOptions.NoInlining)] private static void Q4_0Avx2Rows4(byte* x, byte* y, nint s, int blocks, float* r) => Q4_0Avx2Rows(x, y, s, blocks, r, 4);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void Q4_0Avx2Rows3(byte* x, byte* y, nint s, int blocks, float* r) => Q4_0Avx2Rows(x, y, s, blocks, r, 3);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void Q4_0Avx2Rows2(byte* x, byte* y, nint s, int blocks, float* r) => Q4_0Avx2Rows(x, y, s, blocks, r, 2);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q4_0Avx2Rows(byte* x, byte* y, nint s, int blocks, float* r, int rows)
    {
        Vector256<float> a00 = Vector256<float>.Zero, a01 = Vector256<float>.Zero, a10 = Vector256<float>.Zero, a11 = Vector256<float>.Zero;
        Vector256<float> a20 = Vector256<float>.Zero, a21 = Vector256<float>.Zero, a30 = Vector256<float>.Zero, a31 = Vector256<float>.Zero;
        byte* y0 = y, y1 = y + s, y2 = y + 2 * s, y3 = y + 3 * s;
        int b = 0;
        for (; b + 2 <= blocks; b += 2, x += 36, y0 += 68, y1 += 68, y2 += 68, y3 += 68)
        {
            Vector256<byte> n0 = Q4_0Nibbles256(x), n1 = Q4_0Nibbles256(x + 18);
            float dx0 = Half(x), dx1 = Half(x + 18);
            a00 = Q4_0BlockAvx2(a00, n0, y0, dx0); a01 = Q4_0BlockAvx2(a01, n1, y0 + 34, dx1);
            if (rows > 1) { a10 = Q4_0BlockAvx2(a10, n0, y1, dx0); a11 = Q4_0BlockAvx2(a11, n1, y1 + 34, dx1); }
            if (rows > 2) { a20 = Q4_0BlockAvx2(a20, n0, y2, dx0); a21 = Q4_0BlockAvx2(a21, n1, y2 + 34, dx1); }
            if (rows > 3) { a30 = Q4_0BlockAvx2(a30, n0, y3, dx0); a31 = Q4_0BlockAvx2(a31, n1, y3 + 34, dx1); }
        }
        if (b < blocks)
        {
            Vector256<byte> n0 = Q4_0Nibbles256(x);
            float dx0 = Half(x);
            a00 = Q4_0BlockAvx2(a00, n0, y0, dx0);
            if (rows > 1) a10 = Q4_0BlockAvx2(a10, n0, y1, dx0);
            if (rows > 2) a20 = Q4_0BlockAvx2(a20, n0, y2, dx0);
            if (rows > 3) a30 = Q4_0BlockAvx2(a30, n0, y3, dx0);
        }
        r[0] = Vector256.Sum(a00 + a01);
        if (rows > 1) r[1] = Vector256.Sum(a10 + a11);
        if (rows > 2) r[2] = Vector256.Sum(a20 + a21);
        if (rows > 3) r[3] = Vector256.Sum(a30 + a31);
    }

    /// <summary>The 32 nibbles of the Q4_0 block at <paramref name="x"/> (as Q4_0Block256).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Q4_0Nibbles256(byte* x)
    {
        Vector128<byte> q = Vector128.Load(x + 2);
        return Vector256.Create(q, (q.AsUInt16() >> 4).AsByte()) & Vector256.Create((byte)0x0F);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Q4_0BlockAvx2(Vector256<float> acc, Vector256<byte> nibbles, byte* y, float dx) =>
        Fma.MultiplyAdd(Vector256.Create(dx * Half(y)), Avx.ConvertToVector256Single(OffsetDotAvx2(nibbles, Vector256.Load((sbyte*)y + 2), 8)), acc);

    // ---- Q8_0: Q8_0Avx2's two accumulators per row, the weights widened to 16 bits once. ----

    [MethodImpl(MethodImplOptions.NoInlining)] private static void Q8_0Avx2Rows4(byte* x, byte* y, nint s, int blocks, float* r) => Q8_0Avx2Rows(x, y, s, blocks, r, 4);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void Q8_0Avx2Rows3(byte* x, byte* y, nint s, int blocks, float* r) => Q8_0Avx2Rows(x, y, s, blocks, r, 3);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void Q8_0Avx2Rows2(byte* x, byte* y, nint s, int blocks, float* r) => Q8_0Avx2Rows(x, y, s, blocks, r, 2);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q8_0Avx2Rows(byte* x, byte* y, nint s, int blocks, float* r, int rows)
    {
        Vector256<float> a00 = Vector256<float>.Zero, a01 = Vector256<float>.Zero, a10 = Vector256<float>.Zero, a11 = Vector256<float>.Zero;
        Vector256<float> a20 = Vector256<float>.Zero, a21 = Vector256<float>.Zero, a30 = Vector256<float>.Zero, a31 = Vector256<float>.Zero;
        byte* y0 = y, y1 = y + s, y2 = y + 2 * s, y3 = y + 3 * s;
        int b = 0;
        for (; b + 2 <= blocks; b += 2, x += 68, y0 += 68, y1 += 68, y2 += 68, y3 += 68)
        {
            Vector256<short> w0l = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)x + 2)), w0h = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)x + 18));
            Vector256<short> w1l = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)x + 36)), w1h = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)x + 52));
            float dx0 = Half(x), dx1 = Half(x + 34);
            a00 = Q8_0BlockAvx2(a00, w0l, w0h, y0, dx0); a01 = Q8_0BlockAvx2(a01, w1l, w1h, y0 + 34, dx1);
            if (rows > 1) { a10 = Q8_0BlockAvx2(a10, w0l, w0h, y1, dx0); a11 = Q8_0BlockAvx2(a11, w1l, w1h, y1 + 34, dx1); }
            if (rows > 2) { a20 = Q8_0BlockAvx2(a20, w0l, w0h, y2, dx0); a21 = Q8_0BlockAvx2(a21, w1l, w1h, y2 + 34, dx1); }
            if (rows > 3) { a30 = Q8_0BlockAvx2(a30, w0l, w0h, y3, dx0); a31 = Q8_0BlockAvx2(a31, w1l, w1h, y3 + 34, dx1); }
        }
        if (b < blocks)
        {
            Vector256<short> w0l = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)x + 2)), w0h = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)x + 18));
            float dx0 = Half(x);
            a00 = Q8_0BlockAvx2(a00, w0l, w0h, y0, dx0);
            if (rows > 1) a10 = Q8_0BlockAvx2(a10, w0l, w0h, y1, dx0);
            if (rows > 2) a20 = Q8_0BlockAvx2(a20, w0l, w0h, y2, dx0);
            if (rows > 3) a30 = Q8_0BlockAvx2(a30, w0l, w0h, y3, dx0);
        }
        r[0] = Vector256.Sum(a00 + a01);
        if (rows > 1) r[1] = Vector256.Sum(a10 + a11);
        if (rows > 2) r[2] = Vector256.Sum(a20 + a21);
        if (rows > 3) r[3] = Vector256.Sum(a30 + a31);
    }

    /// <summary>One Q8_0 block (weights widened, low and high 16) into <paramref name="acc"/>, as Q8_0Avx2 (Signed32Avx2).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Q8_0BlockAvx2(Vector256<float> acc, Vector256<short> wl, Vector256<short> wh, byte* y, float dx)
    {
        Vector256<int> p = Avx2.MultiplyAddAdjacent(wl, Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)y + 2)))
                           + Avx2.MultiplyAddAdjacent(wh, Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)y + 18)));
        return Fma.MultiplyAdd(Vector256.Create(dx * Half(y)), Avx.ConvertToVector256Single(p), acc);
    }

    // ---- Q6_K: Q6_K's (narrow) exact isum and offset per row, the 6-bit weights and scale lanes decoded once. ----

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Q6_KAvx2Many(byte* x, byte* y, nint s, int rows, int blocks, float* r)
    {
        for (int k = 0; k < rows; k++)
            r[k] = 0;
        short* scales = stackalloc short[16];
        Vector256<byte>* u = stackalloc Vector256<byte>[8];
        Vector256<short>* spread = stackalloc Vector256<short>[8];
        for (int b = 0; b < blocks; b++, x += 210, y += 292)
        {
            byte* ql = x, qh = x + 128;
            Vector256<short> sc = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)x + 192));
            sc.Store(scales);
            for (int h = 0; h < 2; h++)
            {
                Vector256<ushort> high = Vector256.Load(qh + 32 * h).AsUInt16();
                for (int f = 0; f < 4; f++)
                {
                    Vector256<ushort> low = Vector256.Load(ql + 64 * h + 32 * (f % 2)).AsUInt16();
                    u[4 * h + f] = ((low >> (f < 2 ? 0 : 4)).AsByte() & Vector256.Create((byte)0x0F))
                                   | (((high >> (2 * f)) & Vector256.Create((ushort)0x0303)) << 4).AsByte();
                    spread[4 * h + f] = Spread2(scales, 8 * h + 2 * f);
                }
            }
            float dx = Half(x + 208);
            byte* yk = y;
            for (int k = 0; k < rows; k++, yk += s)
            {
                int offset = 32 * Vector256.Sum(Avx2.MultiplyAddAdjacent(BlockSums8K(yk), sc));
                sbyte* q8 = (sbyte*)yk + 4;
                Vector256<int> acc = Vector256<int>.Zero;
                for (int j = 0; j < 8; j++)
                    acc += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u[j], Vector256.Load(q8 + 32 * j)), spread[j]);
                int isum = Vector256.Sum(acc);
                r[k] += dx * Single(yk) * (isum - offset);
            }
        }
    }
}
