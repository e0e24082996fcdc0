using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

// The kernel tests drive every instruction-set path this machine has (not only the best one) against its scalar twin.
[assembly: InternalsVisibleTo("Llama3.Kernels.Tests")]

namespace Llama3.Kernels.Simd;

/// <summary>The code paths of <see cref="QuantDot"/> and <see cref="ActivationQuant"/>, widest first.</summary>
internal enum KernelPath
{
    /// <summary>The scalar twin.</summary>
    Scalar,
    /// <summary>Portable <see cref="Vector128{T}"/> code (SSE on x86, AdvSimd on Arm).</summary>
    Vector128,
    /// <summary>256-bit x86 code: AVX2 and FMA.</summary>
    Avx2,
    /// <summary>512-bit x86 code: AVX-512 F and BW.</summary>
    Avx512,
}

/// <summary>Which <see cref="KernelPath"/>s this process can run, and the one the public kernels take.</summary>
/// <remarks>
/// .NET 10 reads <c>DOTNET_EnableAVX512=0</c> (not the older <c>DOTNET_EnableAVX512F=0</c>, which it ignores) to turn
/// AVX-512 off, and <c>DOTNET_EnableAVX2=0</c> to turn off AVX2, FMA and everything above them.
/// </remarks>
internal static class KernelPaths
{
    /// <summary>The path the public kernels take: the widest one that is available and accelerated.</summary>
    public static readonly KernelPath Best =
        IsAvailable(KernelPath.Avx512) && Vector512.IsHardwareAccelerated ? KernelPath.Avx512
        : IsAvailable(KernelPath.Avx2) ? KernelPath.Avx2
        : IsAvailable(KernelPath.Vector128) ? KernelPath.Vector128
        : KernelPath.Scalar;

    /// <summary>Whether <paramref name="path"/> can run here.</summary>
    public static bool IsAvailable(KernelPath path) => path switch
    {
        KernelPath.Avx512 => Avx512F.IsSupported && Avx512BW.IsSupported && Avx2.IsSupported && Fma.IsSupported,
        KernelPath.Avx2 => Avx2.IsSupported && Fma.IsSupported,
        KernelPath.Vector128 => Vector128.IsHardwareAccelerated,
        _ => true,
    };

    /// <summary>Every path that can run here, scalar first.</summary>
    public static IEnumerable<KernelPath> Available() => Enum.GetValues<KernelPath>().Where(IsAvailable);
}
