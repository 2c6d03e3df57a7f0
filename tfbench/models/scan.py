"""The scan of a SavedModel before anything of it runs: every op of every function, against an allowlist.

A SavedModel is a program: its functions can read and write files, list folders, print, open
dataset readers, call back into Python.  Netron never executes a model; TensorFlow's own
``saved_model_cli scan`` checks a denylist of three ops.  tfbench keeps the opposite list, in one
place (:data:`PURE_OPS`): the ops of pure computation (arithmetic, neural-network kernels, shapes,
control flow, variables of the model itself).  :func:`scan_savedmodel` reads ``saved_model.pb``
as data (a protobuf, parsed, never run) and checks every node of the main graph and of every
function in its library; anything else is refused by :func:`check_savedmodel` with one line naming
the ops and the functions that hold them, unless the user passes ``--allow-code``.

One exception, and it is narrow: ``tf.saved_model.save`` writes a save and a restore function
(``SaveV2``, ``RestoreV2``, ``MergeV2Checkpoints``), called from the main graph for TensorFlow 1's
loader.  Those checkpoint ops are accepted only in functions that nothing of the object graph (the
functions a TensorFlow 2 load restores and a call runs) can reach; the same op in a serving
function is refused.

``python -m tfbench.inspect --scan MODEL`` prints :func:`scan_report`: every op type, allowed or
not, with its count.  Course context: graph engineering (exercise 3, what a ``GraphDef`` holds).
What the scan cannot see is in docs/security.md.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path

from tfbench.plumbing.errors import UserError

#: The allowlist: ops that compute on tensors and the model's own variables, and nothing else.
PURE_OPS = frozenset("""
Abs Acos Acosh Add AddN AddV2 All Any ApproximateEqual ArgMax ArgMin Asin Asinh Atan Atan2 Atanh
BatchMatMul BatchMatMulV2 BatchMatMulV3 BesselI0e BesselI1e Betainc BiasAdd BiasAddGrad BiasAddV1 Bitcast
BitwiseAnd BitwiseOr BitwiseXor BroadcastArgs BroadcastGradientArgs BroadcastTo Bucketize Cast Ceil
CheckNumerics CheckNumericsV2 Cholesky ClipByValue Complex ComplexAbs Concat ConcatOffset ConcatV2 Conj
ConjugateTranspose Const Conv Conv2D Conv2DBackpropFilter Conv2DBackpropFilterV2 Conv2DBackpropInput
Conv2DBackpropInputV2 Conv3D Conv3DBackpropFilterV2 Conv3DBackpropInputV2 Cos Cosh Cross Cumprod Cumsum
DepthToSpace DepthwiseConv2dNative DepthwiseConv2dNativeBackpropFilter DepthwiseConv2dNativeBackpropInput
Diag DiagPart Digamma Dilation2D Div DivNoNan DynamicPartition DynamicStitch Einsum Elu EluGrad Empty
EnsureShape Equal Erf Erfc Erfinv Exp ExpandDims Expm1 ExtractImagePatches Fill Floor FloorDiv FloorMod
FusedBatchNorm FusedBatchNormGrad FusedBatchNormGradV2 FusedBatchNormGradV3 FusedBatchNormV2 FusedBatchNormV3
Gather GatherNd GatherV2 Gelu Greater GreaterEqual GuaranteeConst Identity IdentityN Igamma Igammac Imag
InTopKV2 InvertPermutation IsFinite IsInf IsNan L2Loss LRN LeakyRelu LeakyReluGrad LeftShift Less LessEqual
Lgamma LinSpace ListDiff Log Log1p LogMatrixDeterminant LogSoftmax LogicalAnd LogicalNot LogicalOr
MatMul MatrixBandPart MatrixDeterminant MatrixDiag MatrixDiagPart MatrixDiagPartV3 MatrixDiagV3 MatrixInverse
MatrixSetDiag MatrixSetDiagV3 MatrixSolve MatrixTriangularSolve Max MaxPool MaxPool3D MaxPoolGrad
MaxPoolGradGrad MaxPoolGradV2 MaxPoolV2 MaxPoolWithArgmax Maximum Mean Min Minimum MirrorPad Mod Mul MulNoNan
Ndtri Neg NextAfter NoOp NonMaxSuppressionV3 NonMaxSuppressionV4 NotEqual OneHot OnesLike Pack Pad PadV2
PlaceholderWithDefault Placeholder Polygamma Pow PreventGradient Prod Qr RandomShuffle RandomStandardNormal
RandomUniform RandomUniformInt Range Rank ReadVariableOp Real RealDiv Reciprocal ReciprocalGrad Relu Relu6
Relu6Grad ReluGrad Reshape ResizeBilinear ResizeBilinearGrad ResizeNearestNeighbor ResizeNearestNeighborGrad
ResourceGather ResourceGatherNd Reverse ReverseSequence ReverseV2 RightShift Rint Roll Round Rsqrt RsqrtGrad
ScatterNd ScatterNdNonAliasingAdd SegmentMax SegmentMean SegmentMin SegmentProd SegmentSum Select SelectV2
Selu SeluGrad Shape ShapeN Sigmoid SigmoidGrad Sign Sin Sinh Size Slice Snapshot Softmax
SoftmaxCrossEntropyWithLogits Softplus SoftplusGrad Softsign SpaceToBatchND SpaceToDepth BatchToSpaceND
SparseSoftmaxCrossEntropyWithLogits SparseToDense Split SplitV Sqrt SqrtGrad Square SquaredDifference Squeeze
StatelessRandomGetAlg StatelessRandomGetKeyCounter StatelessRandomNormal StatelessRandomNormalV2
StatelessRandomUniform StatelessRandomUniformFullInt StatelessRandomUniformFullIntV2 StatelessRandomUniformInt
StatelessRandomUniformIntV2 StatelessRandomUniformV2 StatelessTruncatedNormal StatelessTruncatedNormalV2
StopGradient StridedSlice StridedSliceGrad Sub Sum Svd Tan Tanh TanhGrad TensorScatterAdd TensorScatterMax
TensorScatterMin TensorScatterSub TensorScatterUpdate Tile TileGrad TopKV2 Transpose TruncateDiv TruncateMod
TruncatedNormal Unique UniqueV2 Unpack UnsortedSegmentMax UnsortedSegmentMin UnsortedSegmentProd
UnsortedSegmentSum Where Xdivy Xlog1py Xlogy ZerosLike Zeta AvgPool AvgPool3D AvgPoolGrad
Conv3DBackpropInput FakeQuantWithMinMaxArgs FakeQuantWithMinMaxVars QuantizeAndDequantizeV2
QuantizeAndDequantizeV4 HistogramFixedWidth Betainc Bincount DenseBincount ClipByNorm
If StatelessIf While StatelessWhile Case StatelessCase PartitionedCall StatefulPartitionedCall
Switch Merge Enter Exit NextIteration LoopCond ControlTrigger
VarHandleOp VarIsInitializedOp AssignVariableOp AssignAddVariableOp AssignSubVariableOp DestroyResourceOp
ResourceScatterAdd ResourceScatterUpdate ResourceScatterSub ResourceStridedSliceAssign
VariableShape DisableCopyOnRead
StringJoin StaticRegexFullMatch StaticRegexReplace StringLength StringToNumber AsString
TensorListFromTensor TensorListStack TensorListReserve TensorListSetItem TensorListGetItem TensorListLength
TensorListElementShape TensorListPushBack TensorListPopBack TensorListConcatV2 TensorListSplit
TensorListGather TensorListScatterIntoExistingList TensorListResize EmptyTensorList
TensorArrayV3 TensorArrayReadV3 TensorArrayWriteV3 TensorArrayGatherV3 TensorArrayScatterV3
TensorArraySizeV3 TensorArrayConcatV3 TensorArraySplitV3 TensorArrayCloseV3
XlaSharding XlaDot XlaConv XlaConvV2 XlaDotV2 XlaReduce XlaPad
""".split())

#: Ops the checkpoint functions of ``tf.saved_model.save`` hold: accepted only where no object-graph function reaches.
SAVER_OPS = frozenset({"SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename"})

#: What the refused ops that people meet most often do (the error line says it).
KNOWN_DANGERS = {
    **dict.fromkeys(["ReadFile", "WriteFile", "DeleteFile", "ImmutableConst", "FixedLengthRecordReaderV2",
                     "TextLineReaderV2", "WholeFileReaderV2", "TFRecordReaderV2", "ReaderReadV2",
                     "InitializeTableFromTextFileV2", "DecodeProtoV2", "LoadAndRemapMatrix"], "file I/O"),
    **dict.fromkeys(["MatchingFiles", "MatchingFilesDataset"], "lists folders"),
    **dict.fromkeys(["Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice",
                     "MergeV2Checkpoints"], "checkpoint file I/O"),
    **dict.fromkeys(["PrintV2", "Print", "StringFormat", "Assert", "DebugIdentity", "DebugIdentityV2",
                     "DebugIdentityV3", "DebugNanCount", "DebugNumericSummary", "DebugNumericSummaryV2"],
                    "printing/debug output"),
    **dict.fromkeys(["PyFunc", "PyFuncStateless", "EagerPyFunc"], "calls Python"),
}
DANGER_SUFFIXES = (("Dataset", "dataset reader"), ("DatasetV2", "dataset reader"), ("DatasetV3", "dataset reader"),
                   ("Summary", "summary file I/O"), ("SummaryV2", "summary file I/O"))


def danger(op: str) -> str:
    """A few words on what a refused op does (``"not in the allowlist"`` when it is not a known kind)."""
    if op in KNOWN_DANGERS:
        return KNOWN_DANGERS[op]
    if "PyFunc" in op:
        return "calls Python"
    for suffix, what in DANGER_SUFFIXES:
        if op.endswith(suffix):
            return what
    if op.startswith("Debug"):
        return "printing/debug output"
    if "Summary" in op or op.startswith("WriteSummary") or op.startswith("CreateSummary"):
        return "summary file I/O"
    return "not in the allowlist"


@dataclass
class ScanResult:
    """Every op of a SavedModel: counts per op type, and the refused ones with the functions holding them."""

    path: str
    counts: collections.Counter = field(default_factory=collections.Counter)
    refused: dict[str, list[str]] = field(default_factory=dict)  # op -> functions ("<main graph>" for the graph)
    functions: int = 0
    saver_functions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every op is allowed."""
        return not self.refused

    def refusal(self) -> str:
        """The one-line error for a refused SavedModel."""
        parts = []
        for op in sorted(self.refused):
            where = sorted(set(self.refused[op]))
            shown = ", ".join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")
            parts.append(f"{op} ({danger(op)}; in {shown})")
        return (f"{self.path}: refused before anything of it runs: the SavedModel holds ops outside tfbench's "
                f"allowlist of pure computation: {'; '.join(parts)}. Pass --allow-code only if you trust this file "
                "(python -m tfbench.inspect --scan lists every op)")


def _function_refs(node) -> list[str]:
    """Names of the library functions a NodeDef refers to through its attrs (If/While/Call/dataset functions)."""
    names = []
    for value in node.attr.values():
        if value.HasField("func"):
            names.append(value.func.name)
        names.extend(f.name for f in value.list.func)
    return names


def _parse(path: Path):
    """The SavedModel protobuf of ``path`` (a SavedModel folder), parsed, never run; UserError when damaged."""
    from google.protobuf import message, text_format
    from tensorflow.core.protobuf import saved_model_pb2

    model = saved_model_pb2.SavedModel()
    binary, text = path / "saved_model.pb", path / "saved_model.pbtxt"
    try:
        if binary.exists():
            model.ParseFromString(binary.read_bytes())
        elif text.exists():
            text_format.Parse(text.read_text(errors="replace"), model)
        else:
            raise UserError(f"{path}: a folder but not a SavedModel (no saved_model.pb in it); expected a folder "
                            "written by tf.saved_model.save or model.export")
    except (message.DecodeError, text_format.ParseError, ValueError, RuntimeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UserError(f"{path}: damaged SavedModel: saved_model.pb is not a valid SavedModel protobuf ({first})"
                        ) from None
    if not model.meta_graphs:
        raise UserError(f"{path}: damaged SavedModel: saved_model.pb holds no graph (meta_graphs is empty)")
    return model


def scan_savedmodel(path: str | Path) -> ScanResult:
    """Scan every node of every graph and function of the SavedModel folder ``path`` (nothing is run)."""
    path = Path(path)
    model = _parse(path)
    result = ScanResult(str(path))
    for meta in model.meta_graphs:
        library = {f.signature.name: f for f in meta.graph_def.library.function}
        result.functions += len(library)
        calls = {name: {ref for n in f.node_def for ref in _function_refs(n)}
                 | {n.op for n in f.node_def if n.op in library} for name, f in library.items()}

        def reach(start: set[str]) -> set[str]:
            seen, todo = set(), [s for s in start if s in library]
            while todo:
                name = todo.pop()
                if name not in seen:
                    seen.add(name)
                    todo.extend(c for c in calls[name] if c in library and c not in seen)
            return seen

        graph = meta.object_graph_def
        roots = set(graph.concrete_functions)
        for node in graph.nodes:
            kind = node.WhichOneof("kind")
            if kind == "function":
                roots.update(node.function.concrete_functions)
            elif kind == "bare_concrete_function":
                roots.add(node.bare_concrete_function.concrete_function_name)
        main_refs = {r for n in meta.graph_def.node for r in _function_refs(n)} | {
            n.op for n in meta.graph_def.node if n.op in library}
        # functions only the main graph (the TF1 saver) reaches; everything else is held to the allowlist
        saver_side = reach(main_refs) - reach(roots)
        result.saver_functions = sorted(saver_side)
        held = [("<main graph>", meta.graph_def.node, True)]
        held += [(name, f.node_def, name in saver_side) for name, f in library.items()]
        for where, nodes, saver in held:
            for node in nodes:
                op = node.op
                result.counts[op] += 1
                if op in library or op in PURE_OPS or (saver and op in SAVER_OPS):
                    continue
                result.refused.setdefault(op, []).append(where)
    return result


def check_savedmodel(path: str | Path, allow_code: bool = False) -> ScanResult:
    """Scan ``path``; raise the one-line :class:`UserError` when it holds an op outside the allowlist."""
    result = scan_savedmodel(path)
    if not result.ok and not allow_code:
        raise UserError(result.refusal())
    return result


def scan_report(result: ScanResult) -> str:
    """Every op type of the scanned SavedModel with its count, the refused ones marked, as a table."""
    from tfbench.reporting.tables import markdown_table

    rows = []
    for op, count in sorted(result.counts.items(), key=lambda kv: (kv[0] not in result.refused, -kv[1], kv[0])):
        if op in result.refused:
            verdict = f"REFUSED: {danger(op)}"
        elif op in PURE_OPS:
            verdict = "allowed"
        elif op in SAVER_OPS:
            verdict = "allowed in the checkpoint functions only"
        else:
            verdict = "call of a library function"
        rows.append([op, count, verdict])
    head = (f"scan of {result.path}: {sum(result.counts.values())} nodes, {len(result.counts)} op types, "
            f"{result.functions} functions ({len(result.saver_functions)} checkpoint functions reached only from the "
            f"main graph); " + ("every op is allowed" if result.ok else f"{len(result.refused)} op type(s) REFUSED"))
    return head + "\n\n" + markdown_table(["op", "count", "verdict"], rows)


def scan_file(ref: str | Path) -> tuple[str, str | None]:
    """``python -m tfbench.inspect --scan``: (the report, the refusal line or None); nothing of the file runs.

    A SavedModel folder: :func:`scan_report`.  A Keras file: every layer class of its config with
    counts, and whether any holds Python code (:func:`tfbench.models.keras_check.config_report`).
    """
    path = Path(ref)
    if not path.exists():
        raise UserError(f"{ref}: no such file or folder; --scan takes a SavedModel folder or a .keras/.h5 file")
    if path.is_dir():
        result = scan_savedmodel(path)
        return scan_report(result), None if result.ok else result.refusal()
    from tfbench.models import keras_check

    return keras_check.config_report(path)
