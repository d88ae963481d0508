"""The tests ``vlpbench new-plugin`` writes for a plugin: one honest, passing test per chosen kind
(:func:`tests_module`), importing only :mod:`vlpbench.plugin_api` and :mod:`vlpbench.devkit.testing`."""

from __future__ import annotations


def tests_module(name: str, kinds: list[str]) -> str:
    package = f"vlpbench_{name}"
    lines = ['"""Out-of-the-box tests of the scaffolded components: replace them with hand-worked values."""', "",
             "import torch", "", "from vlpbench.plugin_api import Positives",
             "from vlpbench.devkit.testing import feature_inputs, permute_inputs", ""]
    if "positive_miner" in kinds:
        lines += [f"from {package}.miner import SimilarityMiner", "", "",
                  "def test_identical_reports_are_positives() -> None:",
                  "    text = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])",
                  "    miner = SimilarityMiner(SimilarityMiner.Params(threshold=0.9))",
                  "    positives = miner(feature_inputs(text_global=text, image_global=torch.randn(3, 2)))",
                  "    assert positives.affinity.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]", ""]
    if "negative_weighting" in kinds:
        lines += [f"from {package}.weighting import HardnessWeighting", "", "",
                  "def test_weights_grow_with_similarity() -> None:",
                  "    v = t = torch.tensor([[1.0, 0.0], [0.6, 0.8]])",
                  "    adjustment = HardnessWeighting(HardnessWeighting.Params(alpha=1.0))(",
                  "        feature_inputs(image_global=v, text_global=t), Positives(torch.eye(2)))",
                  "    assert torch.allclose(adjustment.image_to_text.weight, torch.tensor([[2.0, 1.6], [1.6, 2.0]]))", ""]
    if "local_head" in kinds:
        lines += [f"from {package}.head import MaxSimilarityHead", "", "",
                  "def test_head_is_finite_and_ignores_batch_order() -> None:",
                  "    head = MaxSimilarityHead(MaxSimilarityHead.Params())",
                  "    inputs = feature_inputs(batch_size=4, word_counts=[6, 2, 4, 3])",
                  "    out = head(inputs)['maxsim']",
                  "    again = head(permute_inputs(inputs, torch.tensor([2, 0, 3, 1])))['maxsim']",
                  "    assert torch.isfinite(out) and torch.allclose(out, again)", ""]
    if "auxiliary" in kinds:
        lines += [f"from {package}.auxiliary import CrossModalRegression", "", "",
                  "def test_regression_is_zero_when_the_predictor_hits_the_target() -> None:",
                  "    from types import SimpleNamespace",
                  "    aux = CrossModalRegression(CrossModalRegression.Params(hidden=4), SimpleNamespace(embed_dim=2))",
                  "    for layer in aux.predictor:  # make the predictor the identity on these inputs",
                  "        if isinstance(layer, torch.nn.Linear):",
                  "            torch.nn.init.zeros_(layer.bias)",
                  "    torch.nn.init.eye_(aux.predictor[0].weight[:2])",
                  "    torch.nn.init.eye_(aux.predictor[2].weight[:, :2])",
                  "    aux.predictor[0].weight.data[2:] = 0",
                  "    aux.predictor[2].weight.data[:, 2:] = 0",
                  "    aux.predictor[1] = torch.nn.Identity()",
                  "    v = torch.tensor([[1.0, 0.0], [0.0, 2.0]])",
                  "    loss = aux(feature_inputs(image_global=v, text_global=v.clone()))['regression'].detach()",
                  "    assert float(loss) < 1e-12", ""]
    if "global_loss" in kinds:
        lines += [f"from {package}.loss import FixedTemperatureInfoNCE",
                  "from vlpbench.plugin_api import DirectionAdjustment", "", "",
                  "def test_aligned_pairs_give_a_lower_loss_than_swapped_ones() -> None:",
                  "    loss = FixedTemperatureInfoNCE(FixedTemperatureInfoNCE.Params(temperature=0.1))",
                  "    v = torch.eye(3)",
                  "    none = DirectionAdjustment()",
                  "    aligned = loss(v, v, Positives(torch.eye(3)), none, none)",
                  "    swapped = loss(v, v[[1, 2, 0]], Positives(torch.eye(3)), none, none)",
                  "    assert float(aligned) < 0.01 < float(swapped)", ""]
    if "task" in kinds:
        lines += [f"from {package}.task import PrototypeProbe", "", "",
                  "def test_probe_scores_a_perfectly_separating_encoder_auroc_1() -> None:",
                  "    import numpy as np",
                  "    from types import SimpleNamespace",
                  "    from vlpbench.plugin_api import Encoders",
                  "",
                  "    class Split(SimpleNamespace):",
                  "        pass",
                  "",
                  "    labels = np.array([[1], [0], [1], [0]])",
                  "    images = np.stack([np.full((8, 8), 200 if y else 20, np.uint8) for y in labels[:, 0]])",
                  "    source = SimpleNamespace(label_names=['finding'], protocol=lambda: {'name': 'toy'},",
                  "                             split=lambda name: Split(images=images, labels=labels))",
                  "",
                  "    class Brightness(torch.nn.Module):  # feature: [mean brightness, 1 - it]",
                  "        def global_features(self, x):",
                  "            m = x.mean((1, 2, 3)).unsqueeze(1)",
                  "            return torch.cat([m, -m], 1)",
                  "",
                  "    result = PrototypeProbe(PrototypeProbe.Params()).evaluate(Encoders(Brightness(), None), source, torch.device('cpu'))",
                  "    assert result.scores['auroc'] == 1.0 and result.protocols['auroc']['hash']", ""]
    if "image_encoder" in kinds:
        lines += [f"from {package}.encoder import SmallConvEncoder", "", "",
                  "def test_encoder_gives_every_feature_the_tasks_read() -> None:",
                  "    from types import SimpleNamespace",
                  "    encoder = SmallConvEncoder(SmallConvEncoder.Params(channels=4), SimpleNamespace(embed_dim=16))",
                  "    out = encoder(torch.rand(2, 1, 32, 32))",
                  "    assert out.grid == (4, 4) and out.patch_emb.shape == (2, 16, 16) and out.global_emb.shape == (2, 16)",
                  "    assert encoder.global_features(torch.rand(2, 1, 32, 32)).shape == (2, 16)",
                  "    assert [m.shape[-1] for m in encoder.feature_maps(torch.rand(2, 1, 32, 32), min_stride=4)] == [8, 4]", ""]
    if "text_encoder" in kinds:
        lines += [f"from {package}.text_encoder import SmallTransformerTextEncoder", "", "",
                  "def test_text_encoder_gives_every_feature_the_objectives_and_tasks_read() -> None:",
                  "    from vlpbench.plugin_api import BuildContext",
                  "",
                  "    reports = [['Small left pleural effusion.', 'Heart size is normal.'], ['No acute process.']]",
                  "    context = BuildContext(embed_dim=16, corpus=[' '.join(r) for r in reports])",
                  "    params = SmallTransformerTextEncoder.Params(layers=2, hidden=16, heads=2, max_tokens=24, dropout=0.0)",
                  "    torch.manual_seed(0)",
                  "    encoder = SmallTransformerTextEncoder(params, context).eval()",
                  "    tokens = encoder.tokenize(reports)",
                  "    assert tokens.input_ids.shape == (2, 24) and tokens.sentence_index.max() == 1",
                  "    out = encoder(tokens.input_ids, tokens.attention_mask, tokens.sentence_index)",
                  "    assert out.global_emb.shape == (2, 16) and out.word_emb.shape == (2, 24, 16)",
                  "    assert torch.equal(out.word_mask, tokens.sentence_index >= 0)",
                  "    assert out.sentence_mask.tolist() == [[True, True], [True, False]]  # two sentences, then one",
                  "    first = out.word_emb[0][tokens.sentence_index[0] == 0].mean(0)  # S = mean of the sentence's words",
                  "    assert torch.allclose(out.sentence_emb[0, 0], first, atol=1e-6)",
                  "    other = BuildContext(embed_dim=16, corpus=['Another corpus entirely.'])",
                  "    again = SmallTransformerTextEncoder(params, other).eval()",
                  "    again.load_state_dict(encoder.state_dict())  # the vocabulary travels as extra state",
                  "    same = again.tokenize(reports)",
                  "    assert torch.equal(same.input_ids, tokens.input_ids)",
                  "    assert torch.allclose(again(same.input_ids, same.attention_mask, same.sentence_index).global_emb,",
                  "                          out.global_emb, atol=1e-6)",
                  "    plain = encoder.train()(tokens.input_ids, tokens.attention_mask, tokens.sentence_index).global_emb",
                  "    encoder.set_grad_checkpointing(True)",
                  "    encoder.freeze_layers(1)",
                  "    encoder.zero_grad()",
                  "    checkpointed = encoder(tokens.input_ids, tokens.attention_mask, tokens.sentence_index).global_emb",
                  "    assert torch.allclose(checkpointed, plain, atol=1e-6)  # recomputing changes nothing (no dropout)",
                  "    checkpointed.sum().backward()",
                  "    assert encoder.token_emb.weight.grad is None and encoder.blocks[0].linear1.weight.grad is None",
                  "    assert torch.isfinite(encoder.blocks[1].linear1.weight.grad).all()", ""]
    if "dataset" in kinds:
        lines += [f"from {package}.dataset import CsvFolderDataset", "", "",
                  "def test_dataset_reads_the_table_and_the_images(tmp_path) -> None:",
                  "    import numpy as np",
                  "    from PIL import Image",
                  "",
                  "    (tmp_path / 'images').mkdir()",
                  "    rows = ['filename,split,finding_a,finding_b']",
                  "    for i, split in enumerate(['train', 'train', 'val', 'test', 'test']):",
                  "        Image.fromarray(np.full((20, 20), 40 * i, np.uint8)).save(tmp_path / 'images' / f'{i}.png')",
                  "        rows.append(f'{i}.png,{split},{i % 2},{int(i > 2)}')",
                  "    (tmp_path / 'labels.csv').write_text('\\n'.join(rows) + '\\n')",
                  "    source = CsvFolderDataset(CsvFolderDataset.Params(root=str(tmp_path), image_size=16,",
                  "                                                      cache_dir=str(tmp_path / 'store'), workers=1))",
                  "    train, test = source.split('train'), source.split('test')",
                  "    assert len(train) == 2 and len(test) == 2",
                  "    assert np.asarray(test.labels).tolist() == [[1, 1], [0, 1]]",
                  "    assert np.asarray(train.images).shape == (2, 16, 16)",
                  "    assert np.asarray(test.images)[1].mean() > np.asarray(test.images)[0].mean()  # image 4 is brighter", ""]
    return "\n".join(lines)
